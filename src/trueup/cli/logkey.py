"""``trueup log-key``: the verifier key of the log's checkpoints, to pin in clients."""

from __future__ import annotations

import argparse
import sys

from trueup.cli.options import add_storage_options, settings_from
from trueup.service.files import warn_if_shared
from trueup.service.signing import SigningKeyError, load_signer

__all__ = ["run"]


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trueup log-key", description=__doc__)
    add_storage_options(parser)
    settings = settings_from(parser.parse_args(argv))
    try:  # only reads: a key made here would belong to no log
        signer = load_signer(settings.resolved_signing_key_path, settings.log_origin)
    except SigningKeyError as exc:
        print(
            f"trueup log-key: {exc} (give the log's --data-dir or TRUEUP_SIGNING_KEY; "
            "trueup serve creates the key when it first starts)",
            file=sys.stderr,
        )
        return 2
    warn_if_shared(settings.resolved_signing_key_path, "the signing key")
    print(signer.verifier_key())
    return 0
