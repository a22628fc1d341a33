"""``trueup follow CHECKPOINT_FILE --key KEY``: check that the log was only appended to since
the checkpoint you hold, and hold the newer one from then on.

The monitor's side of the log, for the party that does not run the server: run it from cron.
``CHECKPOINT_FILE`` holds a signed checkpoint (a C2SP signed note) you verified before. The
command asks the server for its newest checkpoint and an RFC 9162 consistency proof from the
size held (:meth:`trueup.sdk.Client.follow`), checks both against the pinned key alone and,
when the log grew, puts the newer checkpoint in the file (atomically: a crash leaves the old one
or the new, whole; only the text and the pinned key's signature are kept). A check that fails
leaves the file as it was, and keeps the checkpoint it rejected, where the pinned key signed it,
in ``CHECKPOINT_FILE.rejected`` (``.rejected.2`` and on: never written over): two signed
checkpoints that no consistency proof joins are evidence anyone holding the key can check.

``--init`` starts following: the file must not exist yet, and is created holding the server's
newest checkpoint once its signature checks out (trust on first use of the log's state; the key
itself must be pinned out of band, from ``trueup log-key`` on the server's host). Without it, a
missing file is an error, so a path typed wrong never restarts a monitor from scratch.

Runs on one file take turns (a lock on a hidden ``.NAME.lock`` beside it), so two runs cannot
each accept another history and the file never goes back to a smaller tree. ``--timeout``
bounds the whole run: the wait for another run on the file, and the server's replies.

Prints one line; exits 0 when the log was only appended to (or the file was started), 1 naming
the check that failed (or the server's refusal), 2 when an argument or the file is wrong, and 3
when nothing could be checked (:mod:`trueup.cli.unchecked`: no reply, a reply that is not the
server's, a 429 or a 5xx, or the time ran out), which proves nothing either way and leaves the
file as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from trueup.cli.keyarg import (
    HeldCheckpointError,
    KeyArgumentError,
    add_key_arguments,
    read_held_checkpoint,
    read_verifier_key,
)
from trueup.cli.proof import add_server_url, server_url_problem
from trueup.cli.rejected import keep_rejected, kept_note
from trueup.cli.unchecked import NOT_CHECKED, nothing_checked_by
from trueup.proof import ProofError, TreeHead, VerifierKey, verify_checkpoint
from trueup.proof.errors import shown
from trueup.sdk import Client, TrueupError
from trueup.service.files import replace_private_file, write_private_file

__all__ = ["run"]

_MAX_REPLY_BYTES = 1024 * 1024
"""The longest reply read: a checkpoint and a consistency proof of at most 64 nodes."""


class _FileError(Exception):
    """The checkpoint file cannot be used as asked (exit 2): the message says why."""


class _TimedOut(BaseException):
    """``--timeout`` passed (a BaseException: no ``except Exception`` on the way may keep it)."""


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trueup follow", description=__doc__)
    parser.add_argument("checkpoint_file", help="the file holding the signed checkpoint you follow from")
    add_key_arguments(parser)
    add_server_url(parser)
    parser.add_argument(
        "--init",
        action="store_true",
        help="create CHECKPOINT_FILE from the server's newest checkpoint (it must not exist yet)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds the whole run may take, waiting for another run on the file included (default 60)",
    )
    args = parser.parse_args(argv)
    problem = server_url_problem(args.url)
    if problem is None and not 0 < args.timeout <= 86_400:
        problem = f"--timeout must be more than 0 and at most 86400 seconds, got {args.timeout}"
    if problem is not None:
        print(f"trueup follow: {problem}")
        return 2
    path = Path(args.checkpoint_file)
    try:
        key = read_verifier_key(args.key)
    except KeyArgumentError as exc:
        print(f"trueup follow: {exc}")
        return 2
    origin = args.origin or key.name
    with contextlib.ExitStack() as held_lock:
        try:
            with _deadline(args.timeout):
                held_lock.enter_context(_turn(path, args.init))
                held = None if args.init else _held(path, key, origin)
                newest = _newest(args.url, path, held, key, origin)
        except _FileError as exc:
            print(f"trueup follow: {exc}")
            return 2
        except _TimedOut:
            waited = f"the server's replies, or another run on {path}"
            print(f"NOT CHECKED: the run took more than --timeout {args.timeout:g} s ({waited})")
            return NOT_CHECKED
        if isinstance(newest, int):
            return newest
        return _hold(path, held, newest)


def _hold(path: Path, held: tuple[str, TreeHead] | None, newest: tuple[str, TreeHead]) -> int:
    """Put the newest checkpoint in the file where the log grew (or the file is new); print
    what was proven."""
    note, head = newest
    try:
        if held is None:
            write_private_file(path, note.encode())
        elif head.size > held[1].size:
            target = path.resolve()  # a link's target, not the link, gets the new checkpoint
            replace_private_file(target, note.encode(), stat.S_IMODE(target.stat().st_mode))
    except FileExistsError:  # made meanwhile by a program that does not take turns
        print(f"trueup follow: {path} was created meanwhile: follow from it without --init")
        return 2
    except OSError as exc:
        print(f"trueup follow: the checkpoint was checked, but {path} cannot be written: {exc}")
        return 2
    print(_ok_line(path, None if held is None else held[1], head))
    return 0


def _newest(
    url: str, path: Path, held: tuple[str, TreeHead] | None, key: VerifierKey, origin: str
) -> tuple[str, TreeHead] | int:
    """The server's newest checkpoint (as kept: :func:`~trueup.cli.rejected.kept_note`) and its
    head, checked against the pinned key, and proven to extend ``held`` when one is held; else
    the exit status, once its line is printed."""
    with Client(url, retries=2, max_reply_bytes=_MAX_REPLY_BYTES) as client:
        try:
            if held is None:
                note = client.log_checkpoint()
                return kept_note(note, key), verify_checkpoint(note, key, origin=origin)
            followed = client.follow(held[0], key, origin=origin)
            return kept_note(followed.checkpoint, key), followed.head
        except ProofError as exc:
            print(f"FAILED: {exc}{keep_rejected(path, exc.rejected_checkpoint, key)}")
            return 1
        except TrueupError as exc:
            # Before the log's first head there is nothing to start from, nor anything disproven.
            if nothing_checked_by(exc) or (held is None and exc.status == 404):
                print(f"NOT CHECKED: the server could not be asked: {shown(str(exc), 300)}")
                return NOT_CHECKED
            # A 2xx JSON object that is no checkpoint or proof is the server's (or passes for
            # it) and disproves what it should have proven, but it refused nothing.
            said = (
                "refused" if exc.status is not None and exc.status >= 300 else "did not give what was asked"
            )
            print(f"FAILED: the server {said}: {shown(str(exc), 300)}")
            return 1


@contextlib.contextmanager
def _turn(path: Path, init: bool) -> Iterator[None]:
    """Wait for this file's turn (an exclusive lock on ``.NAME.lock`` beside it), then check
    that the file is there, or for ``--init`` that it is not and its directory is."""
    target = path.resolve()
    if not target.parent.is_dir():
        raise _FileError(f"no directory {path.parent} for {path.name}")
    try:
        fd = os.open(target.with_name(f".{target.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise _FileError(f"cannot take a turn on {path}: {exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if init and os.path.lexists(path):
            raise _FileError(f"{path} exists already: follow from it without --init")
        yield
    finally:
        os.close(fd)  # and the lock with it


def _held(path: Path, key: VerifierKey, origin: str) -> tuple[str, TreeHead]:
    """The checkpoint note held in ``path`` and its head, checked against the pinned key."""
    try:
        return read_held_checkpoint(path, key, origin)
    except HeldCheckpointError as exc:
        if exc.missing:
            raise _FileError(f"{exc}: --init creates it from the server's newest checkpoint") from None
        raise _FileError(str(exc)) from None


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`_TimedOut` in this thread once ``seconds`` have passed: a timer signal, so
    only in the main thread (the command's); elsewhere (``main()`` called from another thread)
    the run is bounded by the client's timeout for each step only. A timer the caller had set
    is set again afterwards, for what was left of it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise _TimedOut

    previous = signal.signal(signal.SIGALRM, expire)
    started = time.monotonic()
    left, interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if left > 0:
            signal.setitimer(signal.ITIMER_REAL, max(left - (time.monotonic() - started), 0.001), interval)


def _ok_line(path: Path, old: TreeHead | None, new: TreeHead) -> str:
    state = f"root {new.root.hex()}, signed by the pinned key"
    if old is None:
        return (
            f"OK: following the log from its newest checkpoint, {_leaves(new.size)}, {state}; held in {path}"
        )
    if new.size == old.size:
        return f"OK: the log is as held, {_leaves(new.size)}, {state}"
    return (
        f"OK: the log grew from {old.size} to {_leaves(new.size)} and was only appended to "
        f"(consistency proven), {state}; held in {path}"
    )


def _leaves(size: int) -> str:
    return "1 leaf" if size == 1 else f"{size} leaves"
