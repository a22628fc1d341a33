"""Logging an operation that keeps failing: its traceback once, then one counting line a try.

The loops that retry (the group commit, the committer process, the role elections, the webhook
dispatcher's rounds) logged a whole traceback on every failure: a database down for a minute,
or a full disk under load, wrote hundreds of thousands of lines, onto a disk that may be the
full one.
"""

from __future__ import annotations

import logging

__all__ = ["FailuresInARow"]


class FailuresInARow:
    """The failures of one repeated operation since it last succeeded, logged to ``log``."""

    def __init__(self, log: logging.Logger, name: str) -> None:
        """``name``: the operation in general ("group commits"), for the line that says the
        failures have ended (each failure names its own try)."""
        self._log = log
        self._name = name
        self.count = 0
        """Failures since the last success."""

    def failed(self, what: str, exc: BaseException, first: str = "") -> None:
        """Count a failure of ``what`` ("group commit of 3 requests"): the first in a row is
        logged with its traceback and ``first`` after "failed", each later one in one line."""
        self.count += 1
        if self.count == 1:
            self._log.error("%s failed%s", what, first, exc_info=exc)
        else:
            self._log.error("%s failed again (%d in a row): %s", what, self.count, exc)

    def succeeded(self) -> None:
        """A success: after failures, said once, so that the log shows when they ended."""
        if self.count:
            self._log.info("%s work again, after %d failures in a row", self._name, self.count)
        self.count = 0
