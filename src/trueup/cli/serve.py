"""``trueup serve``: the API, with the sequencer as its child process (or a thread of it).

The command itself: its options, the roles they settle, and what is checked before anything
starts (the port, the open-file limit). The server process it runs is
:mod:`trueup.cli.server`; with ``--workers``, :mod:`trueup.cli.workers` runs several."""

from __future__ import annotations

import argparse
import logging
import os
import resource
import socket
import sys
from dataclasses import replace

from trueup.cli.options import LOG_LEVELS, add_storage_options, configure_logging, port_number, settings_from
from trueup.cli.server import build, configure_server_logs, first_start, opened_or_said, run_uvicorn
from trueup.cli.workers import serve_workers

__all__ = ["run"]

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
    configure_server_logs()
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
        return serve_workers(args, settings)
    built = opened_or_said(lambda: build(settings, args.sequencer, args.committer))
    if built is None:
        return 1
    services, app = built
    first_start(services, args.host, args.port)
    run_uvicorn(args, app)
    return 0
