"""``trueup keys create|list|revoke|plan``."""

from __future__ import annotations

import argparse
import sys

from trueup.cli.options import add_storage_options, settings_from
from trueup.core.errors import DomainError
from trueup.service.container import warn_about_shared_secrets
from trueup.service.files import DataDirectoryError, make_data_dir
from trueup.service.keys import KeyService
from trueup.service.settings import PLAN_ALLOWANCES, Settings
from trueup.storage import open_storage, sqlite_path

__all__ = ["run"]


def run(argv: list[str]) -> int:
    keys = argparse.ArgumentParser(
        prog="trueup keys", description="create, list and revoke API keys; change a tenant's plan"
    )
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="issue a key; prints only the key")
    create.add_argument("--tenant", default="default", help="tenant name, created if new (default: default)")
    create.add_argument(
        "--env",
        choices=("live", "test"),
        default="live",
        help="the key's environment, pk_live_ or pk_test_, each a tenant of its own (default: live)",
    )
    create.add_argument(
        "--plan",
        default=None,
        help=f"the tenant's plan: {', '.join(PLAN_ALLOWANCES)} or one defined in "
        "TRUEUP_PLAN_ALLOWANCES (default: TRUEUP_DEFAULT_PLAN or unlimited)",
    )
    create.add_argument("--read-only", action="store_true", help="the key may only read")
    add_storage_options(create)
    create.set_defaults(handler=_create)
    listing = actions.add_parser("list", help="list keys (ids, tenants, state; never secrets)")
    add_storage_options(listing)
    listing.set_defaults(handler=_list)
    revoke = actions.add_parser("revoke", help="revoke a key by id or by the key itself")
    revoke.add_argument("key", help="the key id (from `keys list`) or the whole key")
    add_storage_options(revoke)
    revoke.set_defaults(handler=_revoke)
    plan = actions.add_parser("plan", help="put a tenant on another plan (its keys keep working)")
    plan.add_argument(
        "plan", help=f"the new plan: {', '.join(PLAN_ALLOWANCES)} or one in TRUEUP_PLAN_ALLOWANCES"
    )
    plan.add_argument("--tenant", default="default", help="tenant name (default: default)")
    plan.add_argument(
        "--env", choices=("live", "test"), default="live", help="the live or the test tenant (default: live)"
    )
    add_storage_options(plan)
    plan.set_defaults(handler=_plan)
    args = keys.parse_args(argv)
    try:
        code: int = args.handler(args)
    except _RefusedError as exc:
        print(f"trueup keys {args.action}: {exc}", file=sys.stderr)
        return 2
    return code


class _RefusedError(Exception):
    """The command cannot run as asked (exit 2): the message says why."""


def _service(settings: Settings, creating: bool = False) -> KeyService:
    """The key service over the database of ``settings`` (:func:`settings_from`, read once: it
    may warn). Only ``keys create`` may start a new database (a first key before the first
    ``serve``); listing or revoking keys in a mistyped data directory must not leave an empty
    ledger behind."""
    database = sqlite_path(settings.resolved_database_url)
    try:
        if not creating and database is not None and not database.is_file():
            raise _RefusedError(f"no database at {database} (give --data-dir or --database-url)")
        # The data directory holds the key pepper, wherever the database is (PostgreSQL, or a
        # --database-url outside it): listing or revoking keys never makes one.
        if not creating and not settings.data_dir.is_dir():
            raise _RefusedError(
                f"no data directory at {settings.data_dir}: give --data-dir, the directory whose "
                "key-pepper this database's keys were issued with"
            )
        make_data_dir(settings.data_dir)
    except DataDirectoryError as exc:
        raise _RefusedError(str(exc)) from None
    warn_about_shared_secrets(settings)
    storage = open_storage(settings.resolved_database_url)
    try:
        return KeyService(storage, settings.data_dir / "key-pepper", settings.plan_allowances)
    except BaseException:
        storage.close()
        raise


def _create(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.plan is not None and not args.plan.strip():
        print("trueup keys create: --plan: must name a plan (leave it out for the default)", file=sys.stderr)
        return 2
    plan = args.plan or settings.default_plan
    try:
        issued = _service(settings, creating=True).create(
            args.tenant, args.env, plan, args.read_only, plan_given=args.plan is not None
        )
    except DomainError as exc:
        print(f"trueup keys create: {exc.message}", file=sys.stderr)
        return 2
    try:
        print(issued.key, flush=True)
    except OSError as exc:  # a full disk, a closed pipe: the key exists, but nobody has its secret
        print(
            f"trueup keys create: key {issued.key_id} was created but could not be written out "
            f"({exc.strerror or exc}): revoke it (trueup keys revoke {issued.key_id}) and create another",
            file=sys.stderr,
        )
        return 1
    return 0


def _list(args: argparse.Namespace) -> int:
    # first: a setting that cannot be used stops it before any output
    keys = _service(settings_from(args)).list()
    print(
        f"{'KEY ID':<18} {'TENANT':<24} {'TENANT ID':<24} {'ENV':<5} {'PLAN':<10} {'ACCESS':<10} "
        f"{'STATE':<8} CREATED"
    )
    for key in keys:
        state = "revoked" if key.revoked_at else "active"
        access = "read-only" if key.read_only else "read-write"
        print(
            f"{key.id:<18} {key.tenant.name[:24]:<24} {key.tenant.id:<24} {key.tenant.env:<5} "
            f"{key.tenant.plan:<10} {access:<10} {state:<8} {key.created_at}"
        )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    service = _service(settings_from(args))
    try:  # the whole key, or its public part pk_live_<id> as a log shows it, or its id
        key_id = service.named_key(args.key)
    except DomainError as exc:
        print(f"trueup keys revoke: {exc.message}", file=sys.stderr)
        return 1
    if service.revoke(key_id):
        print(f"revoked {key_id}")
        return 0
    revoked = next((key.revoked_at for key in service.list() if key.id == key_id), None)
    if revoked is not None:
        print(f"trueup keys revoke: key {key_id!r} was already revoked, at {revoked}", file=sys.stderr)
    else:
        print(f"trueup keys revoke: no key with id {key_id!r} (trueup keys list shows them)", file=sys.stderr)
    return 1


def _plan(args: argparse.Namespace) -> int:
    try:
        before = _service(settings_from(args)).change_plan(args.tenant, args.env, args.plan)
    except DomainError as exc:
        print(f"trueup keys plan: {exc.message}", file=sys.stderr)
        return 2
    print(f"tenant {args.tenant!r} ({args.env}): plan {before} -> {args.plan}")
    return 0
