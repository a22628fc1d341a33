"""Pruning the webhook tables, a batch at a time, while the dispatcher leads.

Every :data:`PRUNE_EVERY_S`, and as a dispatcher takes the role, a pass deletes the events older
than ``TRUEUP_WEBHOOK_RETENTION_DAYS`` whose deliveries are all finished, with those deliveries
and their attempts, one batch of a few thousand rows per round of the dispatcher
(:mod:`trueup.storage.webhook_pruning`), so pruning a long history never holds the database's
writers back for long.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from trueup.core.failures import FailuresInARow
from trueup.core.timestamps import format_canonical
from trueup.service.metrics import WEBHOOK_PRUNED
from trueup.storage import Storage

__all__ = ["PRUNE_EVERY_S", "WebhookPruner"]

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 600.0
"""How often a pass of pruning starts (and when one failed, how long until the next)."""
_PRUNE_GAP_S = 0.2
"""The least time between two batches of a pass; at least four times as long as the last one
took, too, so that pruning a long history holds the database's writer a fifth of the time at
most, however busy the dispatcher's rounds are."""


class WebhookPruner:
    """The passes of pruning of one dispatcher: ``now`` gives the time events are judged by,
    ``ticks`` (monotonic seconds) when passes and batches are due."""

    def __init__(
        self,
        storage: Storage,
        retention_days: int,
        now: Callable[[], datetime],
        ticks: Callable[[], float],
    ) -> None:
        self._storage = storage
        self._retention_days = retention_days
        self._now = now
        self._ticks = ticks
        self._due = -math.inf  # when the next pass starts (``ticks``)
        self._cutoff: str | None = None  # the pass under way: events before it go
        self._after: tuple[str, str] | None = None  # where its next batch starts
        self._next = -math.inf  # the next batch of the pass under way, not before (``ticks``)
        self._pass = Counter[str]()  # what the pass under way pruned, by table
        self._failures = FailuresInARow(log, "webhook prunings")
        self.pruned = 0
        """Rows pruned (events, deliveries and attempts)."""

    def start_now(self) -> None:
        """A pass starts at the next round (a dispatcher taking the role prunes at once); one
        under way is given up (its next batch would start where another leader left off)."""
        self._due = -math.inf
        self._cutoff = None

    def round(self) -> None:
        """One batch of pruning when a pass is under way or due. A failure ends the pass (logged
        like the rounds' own, its traceback once); the next starts ``PRUNE_EVERY_S`` later."""
        try:
            self.step()
        except Exception as exc:  # noqa: BLE001 - logged, and tried again at the next pass
            self._failures.failed("webhook pruning", exc, f"; trying again in {PRUNE_EVERY_S:g} s")
            self._cutoff = None
            self._due = self._ticks() + PRUNE_EVERY_S
        else:
            self._failures.succeeded()

    def step(self) -> int:
        """Prune one batch: the next of the pass under way (``_PRUNE_GAP_S`` or more after the
        last), or the first of a new pass when one is due (every ``PRUNE_EVERY_S``, and at once
        on taking the role); return the rows deleted.

        A pass deletes the events that happened more than the retention before its start and
        whose deliveries are all finished, with their deliveries and attempts, oldest first.
        Nothing with a retention of 0 days."""
        if self._retention_days == 0:
            return 0
        started = self._ticks()
        if self._cutoff is None:
            if started < self._due:
                return 0
            self._cutoff = format_canonical(self._now() - timedelta(days=self._retention_days))
            self._after = None
            self._pass.clear()
        elif started < self._next:
            return 0
        batch = self._storage.webhooks.prune(self._cutoff, self._after)
        took = self._ticks() - started
        self._next = started + took + max(_PRUNE_GAP_S, 4 * took)
        for table, count in (
            ("webhook_events", batch.events),
            ("webhook_deliveries", batch.deliveries),
            ("webhook_attempts", batch.attempts),
        ):
            if count:
                WEBHOOK_PRUNED.labels(table).inc(count)
                self._pass[table] += count
        self.pruned += batch.rows
        self._after = batch.resume_after
        if batch.resume_after is None:
            if self._pass["webhook_events"]:
                log.info(
                    "pruned %d webhook events (with %d deliveries and %d attempts) that happened "
                    "before %s and were finished",
                    self._pass["webhook_events"],
                    self._pass["webhook_deliveries"],
                    self._pass["webhook_attempts"],
                    self._cutoff,
                )
            self._cutoff = None
            self._due = self._ticks() + PRUNE_EVERY_S
        return batch.rows
