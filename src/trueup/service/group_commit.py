"""Group commit: many concurrent write requests share one transaction and one fsync.

Requests are queued to one committer thread. It takes whatever is waiting (up to a bound),
commits it all in one transaction (a request that fails alone is stored again alone; see
:meth:`trueup.storage.writes.WriteStore.commit`), then resolves each caller's future. Under load
the batch grows by itself, so the fsync cost is shared; with a single caller it commits
immediately and adds no delay.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from trueup.core.errors import UnavailableError
from trueup.core.failures import FailuresInARow
from trueup.core.ids import incident_id
from trueup.service.metrics import COMMIT_BATCH, COMMIT_SECONDS, INGEST_ITEMS
from trueup.storage.errors import StorageUnavailableError
from trueup.storage.write_drafts import WriteDraft, WriteResult

__all__ = ["STORAGE_RETRY_AFTER_S", "CommitStore", "GroupCommitter", "incident_of"]

STORAGE_RETRY_AFTER_S = 1
"""The ``Retry-After`` of a 503 for storage that failed (the API's answer on every route)."""

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    draft: WriteDraft
    future: asyncio.Future[WriteResult]
    loop: asyncio.AbstractEventLoop
    """The event loop of the caller's future (resolved there, a whole group per wake-up)."""


class CommitStore(Protocol):
    """What commits a group: ``WriteStore`` itself, or the committer process
    (``trueup.cli.committer``) that runs it in a process of its own."""

    def commit(self, drafts: Sequence[WriteDraft]) -> list[WriteResult | Exception]: ...


class GroupCommitter:
    """Commits :class:`WriteDraft` s in groups from one background thread."""

    def __init__(self, store: CommitStore, max_items_per_commit: int = 20_000) -> None:
        self._store = store
        self._max_items = max_items_per_commit
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="trueup-group-commit", daemon=True)
        self._stopped = False
        self._thread.start()
        self.commits = 0
        self.requests = 0
        self.on_stored: Callable[[int], None] | None = None
        """Called with the number of deltas each group commit stored (the sequencer's trigger)."""
        self._failures = FailuresInARow(log, "group commits")
        """Group commits failed in a row (storage down, a full disk)."""
        self.failing: str | None = None
        """What the callers of the last group commit were told, if it failed in the database
        (``/readyz`` shows it: reads may go on while every write fails, on a full disk say)."""

    async def commit(self, draft: WriteDraft) -> WriteResult:
        """Commit ``draft`` durably; raise its :class:`DomainError` if it was refused."""
        if self._stopped:
            raise UnavailableError("the server is shutting down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WriteResult] = loop.create_future()
        self._queue.put(_Pending(draft, future, loop))
        return await future

    def commit_through(self, store: CommitStore) -> None:
        """Commit the groups after this one through ``store`` (the committer process)."""
        self._store = store

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        self._stopped = True
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            items = len(first.draft.items)
            stop = False
            while items < self._max_items:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
                items += len(more.draft.items)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            outcomes = self._store.commit([pending.draft for pending in batch])
        except UnavailableError as exc:  # the committer process exited mid-commit, say
            exc.incident_id = incident_of(exc)
            log.warning("group commit %s of %d requests failed: %s", exc.incident_id, len(batch), exc)
            _resolve(batch, [exc] * len(batch))
            return
        except Exception as exc:  # noqa: BLE001 - logged; every caller gets 503, nothing was stored
            # A full disk under load logged a whole traceback for every group, 19,000 of them
            # (500,000 lines) in a minute. Each reply quotes the id its group's line names.
            incident = incident_of(exc)
            self._failures.failed(f"group commit {incident} of {len(batch)} requests", exc)
            # The reply the API gives a storage error on every other route: a client is told
            # when to retry, and nothing of the server's own text (files, hosts, classes).
            reply = exc.reply if isinstance(exc, StorageUnavailableError) else StorageUnavailableError.reply
            error = UnavailableError(reply, retry_after_seconds=STORAGE_RETRY_AFTER_S, incident_id=incident)
            self.failing = reply
            _resolve(batch, [error] * len(batch))
            return
        self._failures.succeeded()
        self.failing = None
        try:
            self._count(batch, outcomes, time.perf_counter() - started)
        except Exception:  # the group is durable: its callers get their replies, and the thread
            log.exception("counting a group commit failed")  # lives on for the next group
        _resolve(batch, outcomes)

    def _count(self, batch: list[_Pending], outcomes: Sequence[WriteResult | Exception], took: float) -> None:
        COMMIT_SECONDS.observe(took)
        COMMIT_BATCH.observe(len(batch))
        self.commits += 1
        self.requests += len(batch)
        stored = sum(len(o.stored) for o in outcomes if not isinstance(o, Exception))
        if stored and self.on_stored is not None:
            self.on_stored(stored)
        for pending, outcome in zip(batch, outcomes, strict=True):
            if not isinstance(outcome, Exception) and outcome.stored:
                INGEST_ITEMS.labels(pending.draft.source).inc(len(outcome.stored))


_Settled = tuple["asyncio.Future[WriteResult]", "WriteResult | Exception"]


def _resolve(batch: list[_Pending], outcomes: Sequence[WriteResult | Exception]) -> None:
    """Hand each caller its outcome. ``asyncio`` futures are set on their own loop, one wake-up
    of that loop for the whole group rather than one per request."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Settled]] = {}
    for pending, outcome in zip(batch, outcomes, strict=True):
        by_loop.setdefault(pending.loop, []).append((pending.future, outcome))
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_all, settled)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            log.warning("an event loop closed before %d write replies reached it", len(settled))


def _settle_all(settled: list[_Settled]) -> None:
    for future, outcome in settled:
        if not future.done():  # the caller may have gone (client disconnected, cancelled)
            _settle(future, outcome)


def _settle(future: asyncio.Future[WriteResult], outcome: WriteResult | Exception) -> None:
    if isinstance(outcome, Exception):  # refused (DomainError), failed alone, or storage down
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def incident_of(exc: BaseException) -> str:
    """The ``err_…`` id by which a failure's reply and its log line name it: the one it carries
    (the committer process made and logged it there), else a new one."""
    found = getattr(exc, "incident_id", None)
    return found if isinstance(found, str) else incident_id(secrets.token_bytes(8))
