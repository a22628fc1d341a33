"""``trueup audit``: exit 0 when the log and balances check out, 1 naming the first mismatch."""

from __future__ import annotations

import argparse
import sys
from urllib.parse import urlsplit, urlunsplit

from trueup.cli.options import add_storage_options, settings_from
from trueup.service.audit import audit_log
from trueup.service.signing import SigningKeyError, load_signer
from trueup.storage import open_storage, sqlite_path
from trueup.storage.migrate import schema_version
from trueup.storage.schema import SCHEMA_VERSION

__all__ = ["run"]


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="trueup audit",
        description="rebuild the tree and every balance from the stored deltas and compare",
    )
    parser.add_argument(
        "--key", default=None, help="verifier key the heads must be signed with (default: this log's key)"
    )
    add_storage_options(parser)
    args = parser.parse_args(argv)
    settings = settings_from(args)
    # An audit only reads: it creates neither a database nor a signing key where none is (a
    # missing --data-dir would otherwise audit a new, empty one, or fail on its missing tables).
    url = settings.resolved_database_url
    database = sqlite_path(url)
    if database is not None and not database.is_file():
        print(
            f"trueup audit: no database at {database} (give --data-dir or --database-url)",
            file=sys.stderr,
        )
        return 2
    if args.key is None and not settings.resolved_signing_key_path.is_file():
        print(
            f"trueup audit: no signing key at {settings.resolved_signing_key_path}: give --key with the "
            "log's verifier key, or the --data-dir that holds its key",
            file=sys.stderr,
        )
        return 2
    storage = open_storage(url, run_migrations=False)
    version, latest = schema_version(storage.engine), SCHEMA_VERSION
    if version != latest:
        storage.close()
        if version is None:
            problem = "the database holds no Trueup log"
        elif version < latest:  # the audit reads the current schema, and changes nothing
            problem = (
                f"the database has schema version {version} and this Trueup reads {latest}: audit "
                "it with the version that wrote it, or start this version's serve once to migrate it"
            )
        else:
            problem = f"the database has schema version {version}, newer than this Trueup knows ({latest})"
        print(f"trueup audit: {problem} ({_shown(url)})", file=sys.stderr)
        return 2
    try:
        key = args.key
        if key is None:
            key = load_signer(settings.resolved_signing_key_path, settings.log_origin).verifier_key()
        report = audit_log(storage, key)
    except SigningKeyError as exc:
        print(f"trueup audit: {exc}", file=sys.stderr)
        return 2
    finally:
        storage.close()
    if report.ok:
        print(
            f"audit passed: {report.leaves} leaves, {report.heads} signed tree heads, "
            "every node and balance rebuilt and equal"
        )
        return 0
    print(f"audit FAILED: {report.problem}", file=sys.stderr)  # the problem names the leaf or head
    return 1


def _shown(url: str) -> str:
    """``url`` without its password, for a message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
