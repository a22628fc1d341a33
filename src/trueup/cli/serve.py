"""``trueup serve``: the API, with the sequencer as its child process (or a thread of it)."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import multiprocessing
import os
import pickle
import resource
import shutil
import signal
import socket
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from trueup.api.app import create_app
from trueup.api.errors import quiet_relogged_errors
from trueup.api.http_protocol import OneWriteHttpToolsProtocol, unlog_refused_bytes
from trueup.api.reply_head import RESPONSE_HEADERS
from trueup.cli.child import SealReport, SequencerProcess
from trueup.cli.committer import CommitterProcess
from trueup.cli.options import LOG_LEVELS, add_storage_options, configure_logging, port_number, settings_from
from trueup.sequencer.loop import SequencerLoop
from trueup.service.collector import settle_collector
from trueup.service.container import Services, open_services
from trueup.service.metrics import observe_seal
from trueup.service.settings import Settings, SettingsError
from trueup.webhooks.dispatcher import Dispatcher

__all__ = ["build", "run"]

log = logging.getLogger(__name__)

MAX_API_WORKERS = 64
"""The most API processes ``--workers`` starts: each holds a pool of up to 8 PostgreSQL
connections, and more for the roles it stands by for, so 64 already need a server that allows
several hundred (PostgreSQL's default is 100)."""


def run(argv: list[str]) -> int:
    serve = argparse.ArgumentParser(prog="trueup serve", description="run the API server")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=port_number, default=8000, help="port to listen on, 1-65535 (default 8000)"
    )
    serve.add_argument(
        "--sequencer",
        choices=("process", "thread", "off"),
        default=None,
        help="where the sequencer runs: a child process of this server (the default with one "
        "worker), a thread of each API process (the default with --workers), or off "
        "(run `trueup sequencer` elsewhere)",
    )
    serve.add_argument("--no-sequencer", action="store_true", help="the same as --sequencer off")
    serve.add_argument(
        "--no-dispatcher",
        action="store_true",
        help="deliver no webhooks from this server: run `trueup dispatcher` elsewhere (by default "
        "every server stands by for the dispatcher role, and one delivers)",
    )
    serve.add_argument(
        "--committer",
        choices=("process", "thread"),
        default=None,
        help="where write requests are committed: a thread of the API process (the default) or "
        "a child process of this server (one worker only; see docs/scaling.md for the trade-off)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help=f"API processes, 1 to {MAX_API_WORKERS}; each also stands by for the sequencer role "
        "(one leads; default 1)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=LOG_LEVELS,
        help="lowest level logged, by this server and the processes it starts (default info)",
    )
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log a line for each request answered (client address, method, path, status) at "
        "level info; off by default: each line costs CPU on every request",
    )
    add_storage_options(serve)
    return _serve(serve.parse_args(argv))


def _cannot_listen(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on, or ``None``. Asked before anything starts, so a
    port in use does not first print a new log's first key, start a sequencer, and then fail."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        return f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}"
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's own socket
        try:
            probe.bind(address)
        except OSError as exc:
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def _first_start(services: Services, host: str, port: int) -> None:
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


def _open_services(settings: Settings, *, signs: bool) -> Services:
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


def build(
    settings: Settings, sequencer: str = "thread", committer: str = "thread"
) -> tuple[Services, FastAPI]:
    """The app and its services; ``sequencer`` is ``process``, ``thread`` or ``off``;
    ``committer`` is ``process`` or ``thread``."""
    services = _open_services(settings, signs=sequencer != "off")
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


def worker_app() -> FastAPI:
    """The app of one ``--workers`` process (uvicorn factory): settings from the environment
    the parent process exported; the sequencer role goes to whichever worker wins the lock."""
    configure_logging()  # a spawned process: none yet, at the level its server passed
    _configure_server_logs()
    settings = replace(
        Settings.from_env(), run_dispatcher=os.environ.get("TRUEUP_RUN_DISPATCHER", "1") == "1"
    )
    _, app = build(settings, "thread" if os.environ.get("TRUEUP_RUN_SEQUENCER", "1") == "1" else "off")
    supervisor = multiprocessing.parent_process()
    if supervisor is not None and supervisor.pid is not None:  # a worker of uvicorn's supervisor
        _stop_when_orphaned(supervisor.pid)  # its pid from the spawn: it may be gone already
    return app


def _stop_when_orphaned(parent: int, poll_s: float = 0.5) -> None:
    """Shut this worker down (as SIGTERM does: finish what is in flight) once ``parent``, the
    ``serve --workers`` supervisor, is gone. uvicorn's workers do not watch it: killed outright,
    it left them serving on its port, where the restarted supervisor could not listen."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        log.warning("the trueup serve --workers process %d is gone; stopping this worker", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="trueup-parent-watch", daemon=True).start()


def _serve_workers(args: argparse.Namespace, settings: Settings) -> int:
    os.environ["TRUEUP_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url:
        os.environ["TRUEUP_DATABASE_URL"] = settings.database_url
    os.environ["TRUEUP_RUN_SEQUENCER"] = "0" if args.sequencer == "off" else "1"
    os.environ["TRUEUP_RUN_DISPATCHER"] = "1" if settings.run_dispatcher else "0"
    try:
        services = _open_services(settings, signs=args.sequencer != "off")  # the workers sign
    except SettingsError:
        raise  # one line and exit 2, from the command's entry point
    except Exception as exc:  # noqa: BLE001 - fail closed with a readable reason (key file, database)
        print(f"trueup serve: cannot start: {exc}", file=sys.stderr)
        return 1
    _first_start(services, args.host, args.port)
    services.close()
    # The workers' metrics go to files in a directory of this server, so /metrics adds up all
    # of them (trueup.service.metrics); set before uvicorn spawns the workers, which read it
    # when they import prometheus_client. One given by the operator is used as it is.
    own_directory = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_directory = _own_metrics_directory(settings, args.port)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(own_directory)
    try:
        _run_uvicorn_workers(args)
    finally:
        if own_directory is not None:
            shutil.rmtree(own_directory, ignore_errors=True)
    return 0


MEMORY_FILE_SYSTEM = Path("/dev/shm")  # noqa: S108 - only a directory this server made (0700) is used
"""Where the workers' metric files go when it is a directory: a file system in memory."""


def _own_metrics_directory(settings: Settings, port: int) -> Path:
    """A new directory for the workers' metric files, off the database's disk where possible.

    prometheus_client writes them through ``mmap`` into files it grows by truncating them, so
    no disk space stands behind their pages: on a full disk the first write to such a page
    kills the worker with SIGBUS, and every worker started after it the same way, so a full
    data directory took the whole API down, reads and probes included, until space was freed.
    Hence a directory in memory (:data:`MEMORY_FILE_SYSTEM`), named after the port and the data
    directory; where there is none, or the name is held by something this server cannot remove
    (another user's), ``<data dir>/metrics-<port>``. Each is emptied first: a server killed
    outright leaves its files behind, and a new name each time would leave them in memory.
    """
    digest = hashlib.sha256(str(settings.data_dir.resolve()).encode()).hexdigest()[:16]
    in_memory = MEMORY_FILE_SYSTEM / f"trueup-metrics-{port}-{digest}"
    shutil.rmtree(in_memory, ignore_errors=True)  # a link is not followed, and not removed
    with contextlib.suppress(OSError):
        in_memory.mkdir(mode=0o700)  # new: this server's own
        return in_memory
    directory = settings.data_dir / f"metrics-{port}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700)
    return directory


class _Supervisor(Multiprocess):
    """uvicorn's supervisor of ``--workers``, made to stop promptly and for good.

    - It lets go of the listening socket when it stops. uvicorn's kept its copy open until
      every worker had finished what was in flight (up to the 10 s of a graceful shutdown): the
      kernel went on taking connections that no worker would accept, the client's request sat
      unanswered, and the connection was reset when the supervisor exited, where a client or
      load balancer should be refused at once and go elsewhere.
    - A signal cuts a worker's health check short. uvicorn's waited out the check (up to
      :data:`WORKER_HEALTHCHECK_S`) before it looked at a SIGTERM, and when the worker did not
      answer, killed it and started another, which it then stopped at once.
    - It waits :data:`WORKER_STOP_GRACE_S` at most for its workers to exit once asked, then
      kills the ones still there (stuck, or stopped by SIGSTOP). uvicorn's waited for ever.
    """

    def terminate_all(self) -> None:
        for sock in self.sockets:  # the workers' copies close as each of them stops accepting
            sock.close()
        super().terminate_all()

    def join_all(self) -> None:
        deadline = time.monotonic() + WORKER_STOP_GRACE_S
        for worker in self.processes:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                log.warning(
                    "worker [%s] did not stop within %d s of being asked to; killing it",
                    worker.pid,
                    WORKER_STOP_GRACE_S,
                )
                worker.process.kill()
                worker.process.join()

    def keep_subprocess_alive(self) -> None:
        """uvicorn's, with :meth:`_answers` for its health check."""
        if self.should_exit.is_set():
            return
        for index, worker in enumerate(self.processes):
            answered = self._answers(worker)
            if answered is None:
                return  # a signal came: the supervisor's loop handles it before anything else
            if answered:
                continue
            alive = worker.process.is_alive()
            worker.kill()
            worker.join()
            if worker.exitcode == STARTUP_FAILURE:  # it would fail the same way again
                log.error("worker [%s] failed to start; stopping", worker.pid)
                self.should_exit.set()
                return
            what = (
                f"did not answer its health check within {WORKER_HEALTHCHECK_S} s (killed as hung)"
                if alive
                else f"died ({_exit_status(worker.exitcode)})"
            )
            log.warning("worker [%s] %s; starting another", worker.pid, what)
            replacement = Process(self.config, self.sockets)
            replacement.start()
            self.processes[index] = replacement

    def _answers(self, worker: Process) -> bool | None:
        """Whether ``worker`` answers a health check within :data:`WORKER_HEALTHCHECK_S`;
        ``None`` if a signal reaches the supervisor first. An answer that comes after a check
        was given up on is taken by the next check, when the worker was alive all the same."""
        if not worker.process.is_alive():
            return False
        deadline = time.monotonic() + WORKER_HEALTHCHECK_S
        try:
            worker.parent_conn.send(b"ping")
            while not worker.parent_conn.poll(_SIGNAL_LOOK_S):
                if self.signal_queue:
                    return None
                if time.monotonic() >= deadline:
                    return False
            worker.parent_conn.recv()
        except (OSError, EOFError, pickle.UnpicklingError):
            return False
        return True


GRACEFUL_SHUTDOWN_S = 10
"""How long a stopping server answers the requests in flight before it cuts off the rest
(docs/scaling.md, "Stopping")."""


class _UvicornNamed(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.name = "uvicorn"
        return True


def _configure_server_logs() -> None:
    """uvicorn's lines as a server process logs them: named ``uvicorn`` (it logs its start and
    stop as ``uvicorn.error``, which a search of the log for errors finds), without the second
    traceback of an error the app has logged with its id, and without its warning for bytes
    that are not HTTP/1.1 (answered with a 400 that says what was wrong)."""
    logging.getLogger("uvicorn.error").addFilter(_UvicornNamed())
    quiet_relogged_errors()
    unlog_refused_bytes()


def _exit_status(code: int | None) -> str:
    """A process's exit code as said of it: ``killed by SIGKILL``, ``exit code 3``."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _uvicorn_options(args: argparse.Namespace) -> dict[str, Any]:
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


def _run_uvicorn(args: argparse.Namespace, app: FastAPI) -> None:
    uvicorn.run(app, **_uvicorn_options(args))


WORKER_HEALTHCHECK_S = 30
"""How long ``--workers``' supervisor waits for a worker to answer its health check before it
kills the worker as hung and starts another. uvicorn's 5 s counted from the worker's start,
before its interpreter had even imported the server: on a busy machine (two cores, load 14)
that alone took 5 to 7.6 s, so every worker was killed as hung before it could answer, and
started again, for good; nothing was served."""


WORKER_STOP_GRACE_S = GRACEFUL_SHUTDOWN_S + 5
"""How long ``--workers``' supervisor waits, once it has asked its workers to stop, for them to
exit before it kills those still there: each worker's own graceful stop answers the requests
in flight for up to :data:`GRACEFUL_SHUTDOWN_S` and then exits."""

_SIGNAL_LOOK_S = 0.2
"""How often a health check waiting for a worker's answer looks for a signal to handle."""


def _run_uvicorn_workers(args: argparse.Namespace) -> None:
    """``uvicorn.run`` with ``workers``, but with :class:`_Supervisor`."""
    config = uvicorn.Config(
        "trueup.cli.serve:worker_app",
        factory=True,
        workers=args.workers,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
        **_uvicorn_options(args),
    )
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run
        _Supervisor(config, sockets=[config.bind_socket()]).run()


def _settle_roles(args: argparse.Namespace) -> str | None:
    """Fill in ``--sequencer`` and ``--committer`` for the deployment asked for; the reason
    when the flags contradict each other."""
    if not 1 <= args.workers <= MAX_API_WORKERS:
        return (
            f"--workers must be 1 to {MAX_API_WORKERS} (each is a process with database "
            "connections of its own)"
        )
    if args.no_sequencer:
        if args.sequencer not in (None, "off"):
            return "--no-sequencer contradicts --sequencer"
        args.sequencer = "off"
    if args.workers == 1:
        args.sequencer = args.sequencer or "process"
        args.committer = args.committer or "thread"
        return None
    if args.committer == "process":
        return (
            "with --workers each worker commits in a thread of its own; use --committer thread (the default)"
        )
    if args.sequencer == "process":
        return (
            "with --workers the workers stand by for the sequencer role themselves; use "
            "--sequencer thread (the default) or off"
        )
    args.sequencer = args.sequencer or "thread"
    args.committer = "thread"
    return None


OPEN_FILES_CAP = 1 << 20
"""The most open files ``serve`` asks for when its hard limit is unlimited (Linux's own
default ceiling, ``fs.nr_open``)."""


def _raise_open_file_limit() -> None:
    """Raise this process's soft limit on open files to its hard limit (its children inherit it).

    Every client connection holds a file descriptor, and a process out of them has new
    connections accepted and closed at once by uvloop, without a reply or a log line, and its
    reads fail to open database connections (docs/scaling.md). The soft limit is what a shell or
    a systemd unit gives by default, 1,024, while the hard limit, which only an administrator
    sets, is far higher: as Go's runtime and many servers do, the server takes what it may.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_CAP if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:  # a ceiling below the hard limit (fs.nr_open)
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, wanted, exc)
        else:
            log.info("open-file limit raised from %d to %d", soft, wanted)


def _serve(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    _configure_server_logs()
    os.environ["TRUEUP_LOG_LEVEL"] = args.log_level  # for the processes it starts
    _raise_open_file_limit()
    settings = replace(
        settings_from(args), host=args.host, port=args.port, run_dispatcher=not args.no_dispatcher
    )
    problem = _settle_roles(args)
    if problem is not None:
        print(f"trueup serve: {problem}", file=sys.stderr)
        return 2
    problem = _cannot_listen(args.host, args.port)
    if problem is not None:
        print(f"trueup serve: {problem}", file=sys.stderr)
        return 1
    if args.workers > 1:
        return _serve_workers(args, settings)
    try:
        services, app = build(settings, args.sequencer, args.committer)
    except SettingsError:
        raise  # one line and exit 2, from the command's entry point
    except Exception as exc:  # noqa: BLE001 - fail closed with a readable reason (key file, database)
        print(f"trueup serve: cannot start: {exc}", file=sys.stderr)
        return 1
    _first_start(services, args.host, args.port)
    _run_uvicorn(args, app)
    return 0
