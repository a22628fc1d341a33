"""The server process of ``trueup serve``: its services and app, with the roles it runs (the
sequencer, the webhook dispatcher, the committer) started and stopped with the app, and the
uvicorn options every server process runs with (one process, or each ``--workers`` worker)."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI

from trueup.api.app import create_app
from trueup.api.errors import quiet_relogged_errors
from trueup.api.http_protocol import OneWriteHttpToolsProtocol, unlog_refused_bytes
from trueup.api.reply_head import RESPONSE_HEADERS
from trueup.cli.child import SealReport, SequencerProcess
from trueup.cli.committer import CommitterProcess
from trueup.sequencer.loop import SequencerLoop
from trueup.service.collector import settle_collector
from trueup.service.container import Services, open_services
from trueup.service.metrics import observe_seal
from trueup.service.settings import Settings, SettingsError
from trueup.webhooks.dispatcher import Dispatcher

__all__ = [
    "GRACEFUL_SHUTDOWN_S",
    "build",
    "configure_server_logs",
    "first_start",
    "open_checked_services",
    "opened_or_said",
    "run_uvicorn",
    "uvicorn_options",
]

T = TypeVar("T")


def first_start(services: Services, host: str, port: int) -> None:
    """On an empty database, create a tenant and print one ready-to-use key."""
    if services.storage.tenants.count() > 0:
        return  # the usual case, answered without taking the writer
    issued = services.keys.create_first("default", services.settings.default_plan)
    if issued is None:
        return  # another server starting on the same new database made it
    base = f"http://{host}:{port}"
    print(
        f"""
Trueup: first start. Created tenant "default" with this API key (shown once, keep it):

    {issued.key}

Try it:

    curl -s -X POST {base}/api/v1/writes \\
      -H "X-Api-Key: {issued.key}" -H "Content-Type: application/json" \\
      -d '{{"items": [{{"key": "order-1", "accountId": "customer-001", "bits": 250}}]}}'

    curl -s {base}/api/v1/balance/derive/customer-001 -H "X-Api-Key: {issued.key}"
""",
        flush=True,
    )


def open_checked_services(settings: Settings, *, signs: bool) -> Services:
    """The services; for a server whose sequencer signs (here or in its child), only once the
    database is found to hold what the signing key signed (LogRollbackError otherwise)."""
    services = open_services(settings)
    if signs:
        try:
            services.sealer.check_signed_head()
        except BaseException:
            services.close()
            raise
    return services


def opened_or_said(open_server: Callable[[], T]) -> T | None:
    """What ``open_server`` opens (services, an app), or ``None`` once the reason it could not is
    said on stderr (a key file, the database): the server fails closed and readable. A setting
    that cannot be used raises on, for the command's entry point to say in one line (exit 2)."""
    try:
        return open_server()
    except SettingsError:
        raise
    except Exception as exc:  # noqa: BLE001 - fail closed with a readable reason (key file, database)
        print(f"trueup serve: cannot start: {exc}", file=sys.stderr)
        return None


def build(
    settings: Settings, sequencer: str = "thread", committer: str = "thread"
) -> tuple[Services, FastAPI]:
    """The app and its services; ``sequencer`` is ``process``, ``thread`` or ``off``;
    ``committer`` is ``process`` or ``thread``."""
    services = open_checked_services(settings, signs=sequencer != "off")
    commits = (
        CommitterProcess(settings.data_dir, settings.database_url, services.storage.writes)
        if committer == "process"
        else None
    )
    if commits is not None:
        services.committer.commit_through(commits)
    dispatcher = Dispatcher(services.storage, settings)
    loop = (
        SequencerLoop(
            services.storage,
            services.sealer,
            interval_s=settings.seal_interval_ms / 1000,
            batch_size=settings.seal_batch_size,
            max_batch_size=settings.seal_max_batch_size,
            on_seal=lambda outcome: dispatcher.wake() if outcome.events else None,
        )
        if sequencer == "thread"
        else None
    )
    if loop is not None:
        # DESIGN.md §3: seal every interval or as soon as a full batch is queued.
        services.committer.on_stored = loop.note_queued

    def sealed_in_child(report: SealReport) -> None:
        # The child's own metrics are not scraped: record its seals here, as a thread would.
        observe_seal(report.seconds, report.sealed, report.tree_size)
        if report.events:
            dispatcher.wake()

    child = (
        SequencerProcess(
            settings.data_dir,
            settings.database_url,
            on_seal=sealed_in_child,
            batch_size=settings.seal_batch_size,
        )
        if sequencer == "process"
        else None
    )
    if child is not None:
        # DESIGN.md §3 as for a thread: the child seals at once when a full batch is queued.
        services.committer.on_stored = child.note_queued

    def start() -> None:
        settle_collector()
        if commits is not None:
            commits.start()
        if child is not None:
            child.start()
        if loop is not None:
            loop.start()
        if settings.run_dispatcher:
            dispatcher.start()

    def stop() -> None:
        if child is not None:
            child.stop()
        if loop is not None:
            loop.stop()
        if settings.run_dispatcher:
            dispatcher.stop()
        services.committer.close()  # commits what is queued, through the child while it runs
        if commits is not None:
            commits.stop()
        services.close()

    def role() -> str:
        if child is not None:
            return child.role
        if loop is None:
            return "off"
        return loop.state

    def dispatcher_role() -> str:
        if not settings.run_dispatcher:
            return "off"
        return dispatcher.state

    def committer_state() -> str:
        if commits is None:
            return "thread"
        return "process" if commits.ready_event.is_set() else "down"

    app = create_app(
        services,
        on_startup=start,
        on_shutdown=stop,
        sequencer_role=role,
        committer_state=committer_state,
        dispatcher_role=dispatcher_role,
    )
    return services, app


GRACEFUL_SHUTDOWN_S = 10
"""How long a stopping server answers the requests in flight before it cuts off the rest
(docs/scaling.md, "Stopping")."""


class _UvicornNamed(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.name = "uvicorn"
        return True


_KEY_SECRET = re.compile(r"(pk_(?:live|test)_[A-Za-z0-9]+)(?:\.|%2[eE])[A-Za-z0-9_%-]+")
"""An API key in text (its secret after the ``.``, percent-encoded or not)."""


class _KeySecretsHidden(logging.Filter):
    """The access log's line for a request whose URL holds an API key (a client that put it in a
    query parameter: refused, but logged as sent) shows the key's public part and ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _KEY_SECRET.sub(r"\1.***", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def configure_server_logs() -> None:
    """uvicorn's lines as a server process logs them: named ``uvicorn`` (it logs its start and
    stop as ``uvicorn.error``, which a search of the log for errors finds), without the second
    traceback of an error the app has logged with its id, without its warning for bytes that are
    not HTTP/1.1 (answered with a 400 that says what was wrong), and with no key's secret in an
    access log line."""
    logging.getLogger("uvicorn.error").addFilter(_UvicornNamed())
    logging.getLogger("uvicorn.access").addFilter(_KeySecretsHidden())
    quiet_relogged_errors()
    unlog_refused_bytes()


def uvicorn_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "loop": "uvloop",
        "http": OneWriteHttpToolsProtocol,
        "headers": list(RESPONSE_HEADERS),  # on every reply, the protocol's own too
        "access_log": args.access_log,
        "log_config": None,  # uvicorn's lines in Trueup's format (configure_logging), with their time
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
    }


def run_uvicorn(args: argparse.Namespace, app: FastAPI) -> None:
    uvicorn.run(app, **uvicorn_options(args))
