"""``trueup log-key``: the verifier key of the log's checkpoints, to pin in clients.

The key is named after the log's origin (``TRUEUP_LOG_ORIGIN``), so the same key file under
another origin is another verifier key. Where the log's database can be read, the key printed
must verify its newest checkpoint, as ``serve`` requires of its key: a wrong origin or a key file
of another log is refused with one line, rather than printing a key every proof of this log
would fail against.
"""

from __future__ import annotations

import argparse
import sys

from trueup.cli.options import add_storage_options, settings_from
from trueup.service.files import warn_if_shared
from trueup.service.settings import Settings
from trueup.service.signing import SigningKeyError, check_log_signer, load_signer
from trueup.storage import open_storage, sqlite_path
from trueup.storage.errors import StorageUnavailableError
from trueup.storage.heads import HeadRecord
from trueup.storage.migrate import schema_version

__all__ = ["run"]


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trueup log-key", description=__doc__)
    add_storage_options(parser)
    settings = settings_from(parser.parse_args(argv))
    path, origin = settings.resolved_signing_key_path, settings.log_origin
    try:  # only reads: a key made here would belong to no log
        signer = load_signer(path, origin)
    except SigningKeyError as exc:
        # A key that is there but cannot be read is this log's damaged key: its message says to
        # restore it. Where there is none, the usual cause is a wrong directory, or, beside a
        # log that has leaves, a key file not copied to this host (serve would refuse to start).
        hint = ""
        if not path.exists():
            head = _newest_head(settings)
            hint = (
                "; give the log's --data-dir or TRUEUP_SIGNING_KEY; trueup serve creates the key "
                "when it first starts"
                if head is None or head.size == 0
                else f"; the database holds a log of {head.size} leaves, signed with its key: copy the "
                "key file from the log's other hosts or restore it from a backup"
            )
        print(f"trueup log-key: {exc}{hint}", file=sys.stderr)
        return 2
    warn_if_shared(path, "the signing key")
    head = _newest_head(settings)
    if head is not None:
        try:
            check_log_signer(signer, path, origin, head.checkpoint, head.size)
        except SigningKeyError as exc:
            print(f"trueup log-key: {exc}", file=sys.stderr)
            return 2
    print(signer.verifier_key())
    return 0


def _newest_head(settings: Settings) -> HeadRecord | None:
    """The log's newest signed head, if it has a database that can be read (one that cannot is
    said on stderr: the key is then printed unchecked)."""
    url = settings.resolved_database_url
    database = sqlite_path(url)
    if database is not None and not database.is_file():
        return None  # no log yet: its first checkpoint will be signed by this key and origin
    try:
        storage = open_storage(url, run_migrations=False)
        try:
            if schema_version(storage.engine) is None:
                return None  # no Trueup has opened it: no log yet
            return storage.log.head()
        finally:
            storage.close()
    except StorageUnavailableError as exc:
        print(f"trueup log-key: not checked against the log, which cannot be read: {exc}", file=sys.stderr)
        return None
