"""``trueup log-key``: the verifier key of the log's checkpoints, to pin in clients."""

from __future__ import annotations

import argparse

from trueup.cli.options import add_storage_options, settings_from
from trueup.service.signing import load_or_create_signer

__all__ = ["run"]


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trueup log-key", description=__doc__)
    add_storage_options(parser)
    settings = settings_from(parser.parse_args(argv))
    signer = load_or_create_signer(settings.resolved_signing_key_path, settings.log_origin)
    print(signer.verifier_key())
    return 0
