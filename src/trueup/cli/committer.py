"""The group commit's transaction in a child process of ``trueup serve`` (``--committer process``).

The group committer (:mod:`trueup.service.group_commit`) gathers the write requests waiting and
commits them in one transaction. As a thread of the API process it shares Python's interpreter
lock with the event loop that parses requests: each statement releases the lock while SQLite
works and must win it back from the busy event loop, so under single-item load a commit of about
30 requests held the SQLite writer for a median 4.8 ms, of which about 1 ms was its own work.
In a process of its own, the same commits held it for 1.7 ms. It is not the default: on two
cores it made single-item writes faster but their p99 higher (docs/benchmarks-history.md,
"What changed on 2026-12-03 (later)").

Groups of batched writes stay in the API process: a group holding :data:`LOCAL_FROM_ITEMS`
items or more in requests of :data:`BULK_REQUEST_ITEMS` items or more is committed there, as by
default. Its statements carry hundreds of rows each, so it hands the interpreter lock back and
forth a few times per thousand items, while pickling it for the child costs about 1.3 ms per
thousand items (batched writes were 14-22 % slower when every group went to the child).

This module has both ends. :class:`CommitterProcess` (in ``serve``) starts the child, restarts
it when it dies, and is the store the group committer commits through. :func:`main` is the
child: it opens the storage, answers one commit at a time, and stops at end of file on its stdin,
which comes when ``serve`` closes it or is killed outright.

The two talk over the child's stdin and stdout in frames: a 4-byte big-endian length, then a
pickle. The child first sends ``READY`` once its storage is open; then for each list of
:class:`WriteDraft` it receives it sends back their outcomes, or :class:`_Failed` when the commit
as a whole failed (nothing was stored). Pickle is safe here: both ends are the same installation
and the pipes belong to these two processes only.

While no child is ready (starting, restarting after a crash) the API process commits in its own
thread, as by default, so writes are never refused for it. A commit in flight
when the child dies may or may not have been committed: its requests are answered 503 and
a retry with the same keys stores each delta once.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from trueup.cli.child import SupervisedChild
from trueup.cli.options import configure_logging
from trueup.core.errors import DomainError, UnavailableError
from trueup.core.failures import FailuresInARow
from trueup.service.group_commit import incident_of
from trueup.service.settings import Settings
from trueup.storage import open_storage
from trueup.storage.errors import StorageFullError, StorageUnavailableError
from trueup.storage.write_drafts import WriteDraft, WriteResult
from trueup.storage.writes import WriteStore

__all__ = ["BULK_REQUEST_ITEMS", "LOCAL_FROM_ITEMS", "CommitInterruptedError", "CommitterProcess", "main"]

log = logging.getLogger(__name__)

_READY = "READY"
_LENGTH = struct.Struct(">I")

LOCAL_FROM_ITEMS = 500
"""A group holding at least this many items in bulk requests is committed in the API process."""

BULK_REQUEST_ITEMS = 100
"""A request of at least this many items is a bulk request (a batched write)."""


class CommitInterruptedError(UnavailableError):
    """The committer process exited during a commit: it may or may not have been stored."""


@dataclass(frozen=True, slots=True)
class _Failed:
    """The child's reply when a commit failed as a whole (nothing of it was stored)."""

    reason: str
    disk_full: bool = False
    """The database's disk was full (:class:`StorageFullError`), which the client is told."""
    incident_id: str | None = None
    """The id the child's log line names the failure by, which the replies then quote."""


Outcomes = list[WriteResult | Exception]


class CommitterProcess(SupervisedChild):
    """Commits through a supervised child process; in this process while none is ready."""

    name = "committer"
    meanwhile = "committing in this process, "

    def __init__(
        self, data_dir: Path, database_url: str | None, local: WriteStore, restart_pause_s: float = 1.0
    ) -> None:
        super().__init__(["trueup.cli.committer"], data_dir, database_url, restart_pause_s)
        self._local = local
        self._channel_lock = threading.Lock()  # one commit at a time on the pipes
        self._ready: subprocess.Popen[bytes] | None = None
        """The child commits go to; ``None`` while none is ready."""
        self.ready_event = threading.Event()
        """Set while a child is ready (``/readyz`` says ``process``, else ``down``)."""

    def commit(self, drafts: Sequence[WriteDraft]) -> Outcomes:
        """Commit ``drafts`` in one transaction, as :meth:`WriteStore.commit` does."""
        reply = None if _bulk(drafts) else self._in_child(drafts)
        if reply is None:
            return self._local.commit(drafts)
        if isinstance(reply, _Failed):
            failed = (StorageFullError if reply.disk_full else StorageUnavailableError)(reply.reason)
            failed.incident_id = reply.incident_id  # type: ignore[attr-defined]
            raise failed
        return reply

    def _in_child(self, drafts: Sequence[WriteDraft]) -> Outcomes | _Failed | None:
        """The child's reply to ``drafts``; ``None`` when they did not reach a ready child whole,
        so that none of them was committed there. Only a commit in the child holds the channel
        lock, so :meth:`stop` never mistakes a commit in this process for one in the child."""
        with self._channel_lock:
            process = self._ready
            if process is None:
                return None
            try:
                frame = _frame([_for_child(draft) for draft in drafts])
            except Exception:  # any value pickle refuses: committed here instead, whole
                log.warning(
                    "a group could not be pickled for the committer; committing it here", exc_info=True
                )
                return None
            assert process.stdin is not None
            assert process.stdout is not None
            try:
                _write_all(process.stdin.fileno(), frame)
            except OSError:
                # The child never read a whole frame, so it committed none of it.
                self._lost(process)
                return None
            try:
                reply: Outcomes | _Failed = _receive(process.stdout.fileno())
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                self._lost(process)
                raise CommitInterruptedError(
                    "the commit was interrupted (the committer process exited), so these writes may "
                    "or may not have been stored; retry with the same keys, which stores each "
                    "delta once",
                    retry_after_seconds=1,
                ) from exc
        return reply

    def stop(self, timeout_s: float = 10.0) -> None:
        """Let the child finish the commit in progress and exit (end of file on its stdin); kill
        it if that commit has not finished within ``timeout_s`` (its callers get 503)."""
        self._stopping.set()
        if not self._channel_lock.acquire(timeout=timeout_s):
            log.warning("a commit in the committer process did not finish in %.0f s; killing it", timeout_s)
            process = self._process
            if process is not None and process.poll() is None:
                process.kill()  # the commit waiting for it fails, which lets the lock go
            self._channel_lock.acquire()
        try:
            self._unready()
        finally:
            self._channel_lock.release()
        super().stop(timeout_s)

    def _ask_to_stop(self, process: subprocess.Popen[Any]) -> None:
        assert process.stdin is not None
        process.stdin.close()

    def _lost(self, process: subprocess.Popen[bytes]) -> None:
        """The child stopped answering mid-commit (called with the channel lock held)."""
        self._unready(process)
        if process.poll() is None:
            process.kill()  # a child that broke the protocol is not trusted with the next commit

    def _unready(self, process: subprocess.Popen[bytes] | None = None) -> None:
        """No child takes commits any more (only if it is still ``process``, when given); called
        with the channel lock held."""
        if process is None or self._ready is process:
            self._ready = None
            self.ready_event.clear()

    def _popen(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            self._command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self._env,
            process_group=0,  # Ctrl-C in a terminal reaches serve only, which stops it
        )

    def _follow(self, process: subprocess.Popen[bytes]) -> int:
        """Wait for the child's ``READY``, route commits to it until it exits; its status."""
        assert process.stdout is not None
        try:
            ready = _receive(process.stdout.fileno())
        except (OSError, EOFError, pickle.UnpicklingError):
            ready = None
        if ready == _READY:
            with self._channel_lock:
                if not self._stopping.is_set():
                    self._ready = process
                    self.ready_event.set()
        else:
            process.kill()
        code = process.wait()
        with self._channel_lock:
            self._unready(process)
        if process.stdin is not None and not process.stdin.closed:
            process.stdin.close()
        process.stdout.close()
        return code


def _bulk(drafts: Sequence[WriteDraft]) -> bool:
    """Whether the group is committed in the API process: it holds :data:`LOCAL_FROM_ITEMS`
    items or more in requests of :data:`BULK_REQUEST_ITEMS` items or more. Many small requests
    are not bulk, however many items they add up to: each of those that is stored alone (an
    ``Idempotency-Key``, an allowance) takes statements of its own, the case the child is for."""
    return sum(n for draft in drafts if (n := len(draft.items)) >= BULK_REQUEST_ITEMS) >= LOCAL_FROM_ITEMS


def _for_child(draft: WriteDraft) -> WriteDraft:
    """The draft as the child needs it: ``render`` only runs there for an ``Idempotency-Key``."""
    return draft if draft.idempotency is not None else replace(draft, render=None)


def _frame(value: object) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def _write_all(fd: int, frame: bytes) -> None:
    view = memoryview(frame)
    while view:
        view = view[os.write(fd, view) :]


def _send(fd: int, value: object) -> None:
    _write_all(fd, _frame(value))


def _receive(fd: int) -> Any:
    (length,) = _LENGTH.unpack(_read_exactly(fd, _LENGTH.size))
    return pickle.loads(_read_exactly(fd, length))  # noqa: S301 - our own child or parent, see above


def _read_exactly(fd: int, size: int) -> bytes:
    parts: list[bytes] = []
    left = size
    while left:
        part = os.read(fd, min(left, 1 << 20))
        if not part:
            raise EOFError("the other end of the committer pipe closed")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _portable(outcome: WriteResult | Exception) -> WriteResult | Exception:
    """Domain errors pickle with their fields; any other error travels as its description
    (it was logged here with its traceback)."""
    if isinstance(outcome, WriteResult | DomainError):
        return outcome
    return RuntimeError(f"{type(outcome).__name__}: {outcome}")


def main() -> int:
    """The child: commit what the parent sends until its stdin ends."""
    configure_logging()
    # The parent decides when this process ends (end of file on stdin, or a kill): a SIGTERM or
    # Ctrl-C sent to the whole group (systemd stops a service that way) must not cut a commit short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The frames go to the parent on a private copy of stdout; whatever else writes to fd 1
    # (a library's print) goes to stderr instead of corrupting them.
    replies = os.dup(1)
    os.dup2(2, 1)
    settings = Settings.from_env()
    storage = open_storage(settings.resolved_database_url)
    failures = FailuresInARow(log, "group commits")  # logged as the parent logs its own
    try:
        _send(replies, _READY)
        while True:
            try:
                drafts = _receive(0)
            except EOFError:
                return 0
            reply: Outcomes | _Failed
            try:
                reply = [_portable(outcome) for outcome in storage.writes.commit(drafts)]
                failures.succeeded()
            except Exception as exc:  # noqa: BLE001 - logged; the parent answers 503, nothing was stored
                incident = incident_of(exc)
                failures.failed(f"group commit {incident} of {len(drafts)} requests", exc)
                reply = _Failed(f"{type(exc).__name__}: {exc}", isinstance(exc, StorageFullError), incident)
            try:
                _send(replies, reply)
            except OSError:  # the parent is gone; what was committed stays committed
                return 0
    finally:
        storage.close()


if __name__ == "__main__":
    # Run the module's own copy, not this ``__main__`` one: what it pickles (``_Failed``) must
    # name the module the parent unpickles it from.
    from trueup.cli.committer import main as _main

    sys.exit(_main())
