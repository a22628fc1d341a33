"""``trueup log-key``: the verifier key of the log's checkpoints, to pin in clients.

The key is named after the log's origin (``TRUEUP_LOG_ORIGIN``), so the same key file under
another origin is another verifier key. Where the log's database can be read, the key printed
must verify its newest checkpoint: a wrong origin or a key file of another log is refused with
one line, rather than printing a key every proof of this log would fail against.
"""

from __future__ import annotations

import argparse
import sys

from trueup.cli.options import add_storage_options, settings_from
from trueup.proof import CheckpointSigner, ProofError, parse_checkpoint, verify_checkpoint
from trueup.service.files import warn_if_shared
from trueup.service.settings import Settings
from trueup.service.signing import SigningKeyError, load_signer
from trueup.storage import open_storage, sqlite_path
from trueup.storage.errors import StorageUnavailableError

__all__ = ["run"]


class _WrongKeyError(Exception):
    """The key and origin given do not verify the log's newest checkpoint."""


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
    try:
        _check_against_the_log(settings, signer)
    except _WrongKeyError as exc:
        print(f"trueup log-key: {exc}", file=sys.stderr)
        return 2
    print(signer.verifier_key())
    return 0


def _check_against_the_log(settings: Settings, signer: CheckpointSigner) -> None:
    """Refuse a key and origin that do not verify the log's newest checkpoint, when there is one
    to read (no database yet, or one that cannot be reached, is said on stderr and not refused)."""
    url = settings.resolved_database_url
    database = sqlite_path(url)
    if database is not None and not database.is_file():
        return  # no log yet: its first checkpoint will be signed by this key and origin
    try:
        storage = open_storage(url, run_migrations=False)
        try:
            head = storage.log.head()
        finally:
            storage.close()
    except StorageUnavailableError as exc:
        print(f"trueup log-key: not checked against the log, which cannot be read: {exc}", file=sys.stderr)
        return
    if head is None:
        return
    try:
        signed_origin, _ = parse_checkpoint(head.checkpoint)
    except ProofError as exc:
        raise _WrongKeyError(f"the log's newest checkpoint cannot be read ({exc}); run trueup audit") from exc
    if signed_origin != settings.log_origin:
        raise _WrongKeyError(
            f"this log's checkpoints name the origin {signed_origin!r}, and TRUEUP_LOG_ORIGIN is "
            f"{settings.log_origin!r}: run it with TRUEUP_LOG_ORIGIN={signed_origin}"
        )
    try:
        verify_checkpoint(head.checkpoint, signer.verifier_key(), origin=signed_origin)
    except ProofError as exc:
        raise _WrongKeyError(
            f"the signing key at {settings.resolved_signing_key_path} did not sign this log's "
            f"checkpoints ({exc}): give the --data-dir or TRUEUP_SIGNING_KEY of the server that did"
        ) from exc
