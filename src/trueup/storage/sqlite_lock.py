"""The SQLite writer's turn across processes: an ``flock`` on a lock file, waited for within a
deadline.

A blocking ``flock`` is woken by the kernel the moment the holder lets go (or dies), so writers
of several processes (``serve --workers``) take turns as promptly as the threads of one process
do; SQLite's own lock makes a second writer poll with growing sleeps instead. But a blocking
``flock`` waits without end: a holder that is stopped (SIGSTOP, a debugger, a frozen VM) hung
every write of every other process, where SQLite's busy timeout had ended the wait. So the
lock is first tried without waiting; when another process holds it, a thread of this lock's
own waits in ``flock`` on a second descriptor, and the writer waits for that thread within the
deadline, then gives up (:class:`StorageUnavailableError`: a 503 to the request). A turn the
thread gets after its writer gave up is let go at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path

from trueup.storage.errors import StorageUnavailableError

__all__ = ["WriterTurn", "open_lock_file"]

_MOMENT_S = 0.05


def open_lock_file(path: Path) -> int:
    """A descriptor of the lock file at ``path``, created 0600 and made 0600 if it is not.

    ``flock`` asks for no write access: a lock file another local user can open is a lock they
    can take and hold (the writer's turn, or a role, so that nothing is sealed). An older
    version created them 0644, and opening one does not change its mode, so it is changed here.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            with contextlib.suppress(PermissionError):  # another user's file: theirs to change
                os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return fd


class WriterTurn:
    """The writer lock across processes; one writer of this process at a time asks for it
    (the engine's in-process lock orders them)."""

    def __init__(self, path: Path, wait_s: float) -> None:
        self._path = path
        self._wait_s = wait_s
        self._fd = open_lock_file(path)
        self._waiter_fd: int | None = None
        """The descriptor the waiting thread takes the lock on (its own open of the file)."""
        self._held_fd: int | None = None
        self._state = threading.Condition()
        self._wanted = False
        self._granted = False
        self._closed = False
        self._abandoned = False
        """A writer gave up while the waiting thread is still in ``flock``: the holder is stuck,
        so the writers after it are refused at once rather than each waiting ``wait_s``."""
        self._error: OSError | None = None
        self._waiter: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lock, waiting at most ``wait_s``.

        Raises:
            StorageUnavailableError: another process held it all that time, or the file system
                has no locks.
        """
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # another process holds it: wait below
        except OSError as exc:  # a file system without locks, say
            raise StorageUnavailableError(f"cannot take the SQLite writer lock: {exc}") from exc
        else:
            self._held_fd = self._fd
            return
        with self._state:
            # Behind a holder a write already gave up on, only a moment: the turn the waiting
            # thread may be getting just now, not another full wait.
            stuck = self._abandoned
            self._start_waiter()
            self._wanted = True
            self._state.notify_all()
            self._state.wait_for(
                lambda: self._granted or self._closed or self._error is not None,
                _MOMENT_S if stuck else self._wait_s,
            )
            self._wanted = False
            if self._granted:
                self._granted = False
                self._held_fd = self._waiter_fd
                return
            error, self._error = self._error, None
            if error is None:
                self._abandoned = True
        if error is not None:
            raise StorageUnavailableError(f"cannot take the SQLite writer lock: {error}") from error
        if stuck:
            raise StorageUnavailableError(
                f"the SQLite writer lock ({self._path.name}) is still held by another process, "
                f"which a write before this one waited {self._wait_s:g} s for; try again"
            )
        raise StorageUnavailableError(
            f"the SQLite writer lock ({self._path.name}) was held by another process for "
            f"{self._wait_s:g} s (one stopped, or stuck in a long write); try again"
        )

    def release(self) -> None:
        held, self._held_fd = self._held_fd, None
        if held is not None:
            fcntl.flock(held, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._state:
            self._closed = True
            self._state.notify_all()
        os.close(self._fd)
        # The waiting thread may still be in flock on its descriptor: it closes that itself.

    def _start_waiter(self) -> None:
        if self._waiter is not None:
            return
        try:
            self._waiter_fd = open_lock_file(self._path)
        except OSError as exc:  # out of descriptors, say
            raise StorageUnavailableError(f"cannot wait for the SQLite writer lock: {exc}") from exc
        self._waiter = threading.Thread(
            target=self._wait_for_turns, name="trueup-sqlite-writer-lock", daemon=True
        )
        self._waiter.start()

    def _wait_for_turns(self) -> None:
        fd = self._waiter_fd
        assert fd is not None
        try:
            while True:
                with self._state:
                    # Asked for, and the last turn it got taken up (or given back).
                    self._state.wait_for(lambda: (self._wanted and not self._granted) or self._closed)
                    if self._closed:
                        return
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # as long as the holder takes, outside the state lock
                except OSError as exc:  # the file system lost its locks, say: the writer is told
                    with self._state:
                        self._error, self._waiter = exc, None  # the next writer starts another
                        self._state.notify_all()
                    return
                with self._state:
                    self._abandoned = False  # the holder let go
                    if self._wanted and not self._closed:
                        self._granted = True  # the writer lets it go (release) when done
                        self._state.notify_all()
                        continue
                fcntl.flock(fd, fcntl.LOCK_UN)  # its writer gave up meanwhile
        finally:
            os.close(fd)
