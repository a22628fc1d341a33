"""``trueup serve --workers N``: N API processes under one supervisor, sharing one port.

Each worker is a server process of its own (:mod:`trueup.cli.server`, settings from the
environment the supervisor exports); the sequencer and dispatcher roles go to whichever worker
wins their locks. The supervisor is uvicorn's, made to stop promptly and for good
(:class:`_Supervisor`), and the workers' metrics go to files that ``/metrics`` adds up.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import multiprocessing
import os
import pickle
import shutil
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from trueup.cli.options import configure_logging
from trueup.cli.server import (
    GRACEFUL_SHUTDOWN_S,
    build,
    configure_server_logs,
    first_start,
    open_checked_services,
    opened_or_said,
    uvicorn_options,
)
from trueup.service.settings import Settings

__all__ = ["MEMORY_FILE_SYSTEM", "WORKER_STOP_GRACE_S", "serve_workers", "worker_app"]

log = logging.getLogger(__name__)


def worker_app() -> FastAPI:
    """The app of one ``--workers`` process (uvicorn factory): settings from the environment
    the parent process exported; the sequencer role goes to whichever worker wins the lock."""
    configure_logging()  # a spawned process: none yet, at the level its server passed
    configure_server_logs()
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


def serve_workers(args: argparse.Namespace, settings: Settings) -> int:
    os.environ["TRUEUP_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url:
        os.environ["TRUEUP_DATABASE_URL"] = settings.database_url
    os.environ["TRUEUP_RUN_SEQUENCER"] = "0" if args.sequencer == "off" else "1"
    os.environ["TRUEUP_RUN_DISPATCHER"] = "1" if settings.run_dispatcher else "0"
    services = opened_or_said(lambda: open_checked_services(settings, signs=args.sequencer != "off"))
    if services is None:  # the workers sign: the database must hold what the key signed
        return 1
    first_start(services, args.host, args.port)
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


def _exit_status(code: int | None) -> str:
    """A process's exit code as said of it: ``killed by SIGKILL``, ``exit code 3``."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


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
        "trueup.cli.workers:worker_app",
        factory=True,
        workers=args.workers,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
        **uvicorn_options(args),
    )
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run
        _Supervisor(config, sockets=[config.bind_socket()]).run()
