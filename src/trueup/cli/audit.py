"""``trueup audit``: exit 0 when the log and balances check out, 1 naming the first mismatch."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from trueup.cli.keyarg import KeyArgumentError, read_verifier_key
from trueup.cli.options import add_storage_options, settings_from
from trueup.proof import ProofError, format_verifier_key, parse_checkpoint, verify_checkpoint
from trueup.service.audit import AuditReport, audit_log
from trueup.service.container import warn_about_shared_secrets
from trueup.service.settings import Settings, without_password
from trueup.service.signed_head import LogRollbackError, SignedHeadRecord
from trueup.service.signing import SigningKeyError, load_signer
from trueup.storage import Storage, open_storage, sqlite_path
from trueup.storage.migrate import schema_version
from trueup.storage.schema import SCHEMA_VERSION

__all__ = ["run"]


class _RefusedError(Exception):
    """The audit cannot run as asked (exit 2): the message says why."""


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="trueup audit",
        description="rebuild the tree and every balance from the stored deltas and compare",
    )
    parser.add_argument(
        "--key",
        default=None,
        help="verifier key the heads must be signed with (name+id+base64, or a file holding it; "
        "default: this log's key)",
    )
    add_storage_options(parser)
    args = parser.parse_args(argv)
    settings = settings_from(args)
    try:
        report = _audit(settings, args.key)
    except (_RefusedError, KeyArgumentError, SigningKeyError) as exc:
        print(f"trueup audit: {exc}", file=sys.stderr)
        return 2
    for warning in report.warnings:
        print(f"audit warning: {warning}", file=sys.stderr)
    if report.ok:
        print(
            f"audit passed: {report.leaves} leaves, {report.heads} signed tree heads, "
            f"every node and balance rebuilt and equal, in {_shown(settings)}"
        )
        return 0
    print(f"audit FAILED: {report.problem}", file=sys.stderr)  # the problem names the leaf or head
    return 1


def _shown(settings: Settings) -> str:
    """The database audited, as the report names it (a password shown as ``***``): the
    database URL, when one is set, decides it over ``--data-dir``."""
    return without_password(settings.resolved_database_url)


def _audit(settings: Settings, key_argument: str | None) -> AuditReport:
    given_key = None if key_argument is None else read_verifier_key(key_argument)
    warn_about_shared_secrets(settings)
    # An audit only reads: it creates neither a database nor a signing key where none is (a
    # missing --data-dir would otherwise audit a new, empty one, or fail on its missing tables).
    url = settings.resolved_database_url
    database = sqlite_path(url)
    if database is not None and not database.is_file():
        raise _RefusedError(f"no database at {database} (give --data-dir or --database-url)")
    if given_key is None and not settings.resolved_signing_key_path.is_file():
        raise _RefusedError(
            f"no signing key at {settings.resolved_signing_key_path}: give --key with the log's "
            "verifier key, or the --data-dir that holds its key"
        )
    storage = open_storage(url, run_migrations=False, checkpoint_wal=False)  # the server's to keep
    try:
        _check_schema(storage, url)
        if given_key is not None:
            key = format_verifier_key(given_key.name, given_key.public_key)
        else:
            _check_origin(storage, settings)
            key = load_signer(settings.resolved_signing_key_path, settings.log_origin).verifier_key()
        report = audit_log(storage, key)
        if not report.ok:
            return report
        if clear := storage.webhooks.clear_secret_count():
            report = replace(report, warnings=(*report.warnings, _clear_secrets_warning(clear)))
        return _check_signed_head(storage, settings, report)
    finally:
        storage.close()


def _clear_secrets_warning(count: int) -> str:
    return (
        f"{count} webhook endpoints have a secret stored in clear, as a Trueup before schema "
        "version 14 stored them: the dispatcher seals them as it takes its role (restart the "
        "server that holds it), and rotating them retires the clear copies (docs/webhooks.md)"
    )


def _check_signed_head(storage: Storage, settings: Settings, report: AuditReport) -> AuditReport:
    """The log checks out in itself: it must also hold the newest head the sequencer of this
    data directory recorded signing (a database restored from an older backup, or another
    log's, does not). Only reads; nothing to compare without the record."""
    record = SignedHeadRecord.of(settings)
    try:
        problem = record.problem(storage)
    except LogRollbackError as exc:  # the record cannot be read
        problem = str(exc)
    if problem is None:
        return report
    return replace(report, ok=False, problem=problem)


def _check_schema(storage: Storage, url: str) -> None:
    version, latest = schema_version(storage.engine), SCHEMA_VERSION
    if version == latest:
        return
    if version is None:
        problem = "the database holds no Trueup log"
    elif version < latest:  # the audit reads the current schema, and changes nothing
        problem = (
            f"the database has schema version {version} and this Trueup reads {latest}: audit "
            "it with the version that wrote it, or start this version's serve once to migrate it"
        )
    else:
        problem = f"the database has schema version {version}, newer than this Trueup knows ({latest})"
    raise _RefusedError(f"{problem} ({without_password(url)})")


def _check_origin(storage: Storage, settings: Settings) -> None:
    """This log's own key is named ``TRUEUP_LOG_ORIGIN``: refuse when its checkpoints name
    another, which the key signed (a checkpoint edited to name another is the audit's to report,
    not a setting to follow)."""
    origin = settings.log_origin
    head = storage.log.head()
    if head is None:
        return
    try:
        signed_origin, _ = parse_checkpoint(head.checkpoint)
        if signed_origin == origin:
            return
        signer = load_signer(settings.resolved_signing_key_path, signed_origin)
        verify_checkpoint(head.checkpoint, signer.verifier_key(), origin=signed_origin)
    except ProofError:
        return  # the audit itself names what is wrong with the checkpoint
    else:
        raise _RefusedError(
            f"this log's checkpoints name the origin {signed_origin!r}, and TRUEUP_LOG_ORIGIN is "
            f"{origin!r}: audit with TRUEUP_LOG_ORIGIN={signed_origin}, or give --key"
        )
