"""A locked period checked in the client rather than trusted: its pages (``Client.verify_period``)
and, given the customer's period of the month before, that it starts where that one ends
(``Client.check_chain``), each against the verifier key you pinned (docs/verification.md).

:class:`PeriodChecks` is that part of :class:`trueup.sdk.Client`, on top of the log's checks
(:class:`~trueup.sdk.log_checks.LogChecks`): it asks through the client's ``_send``.
"""

from __future__ import annotations

import re
from typing import Any

from trueup.proof import (
    PeriodCheck,
    PeriodError,
    ProofError,
    TreeHead,
    VerifiedPeriod,
    VerifierKey,
    chain_periods,
    verify_checkpoint,
)
from trueup.sdk.envelope import strict_document
from trueup.sdk.errors import TrueupError
from trueup.sdk.log_checks import LogChecks, pinned, refuse_empty_held

__all__ = ["PeriodChecks"]

_ROOT = re.compile(r"(?:0x)?([0-9a-f]{64})")


class PeriodChecks(LogChecks):
    """The checks of locked periods, for :class:`trueup.sdk.Client`."""

    def verify_period(
        self,
        proof_root: str,
        pinned_key: str | VerifierKey,
        *,
        origin: str | None = None,
        page_size: int = 1000,
        held: str | None = None,
        after: str | None = None,
    ) -> VerifiedPeriod:
        """Fetch every page of the period checkpoint ``proof_root`` (``GET
        /api/v1/verify/{proofRoot}``, public) and check it here against ``pinned_key``
        (:func:`trueup.proof.verify_period`): pages for that root only, every record proven in
        the signed log, as many as the summary says, recomputing the root, summing to its net
        change. With ``held``, a checkpoint note you verified before (:meth:`follow`'s), the
        tree the records are proven in must be of the held log (:meth:`check_same_log`; the
        empty tree's checkpoint, which ties nothing, is a :class:`ValueError`). With ``after``,
        the proof root of the customer's period checkpoint of the month before: that period is
        verified first, the same way, the two trees are checked to be of one log
        (:meth:`check_same_log`), and this period's starting balance, otherwise the server's
        word, must be that period's ending balance (:func:`~trueup.proof.chain_periods`). Raises
        :class:`~trueup.proof.ProofError` when any check fails, and :class:`TrueupError`
        ``BAD_REPLY`` for a page that is not a JSON object (not the server's).

        The pages are read as ``trueup verify`` reads a bundle (a member given twice is
        refused), and each is checked as it comes (:class:`~trueup.proof.PeriodCheck`): a
        server cannot make the client fetch pages past the first wrong one, nor without end
        (page 1's ``recordsTotal`` is at most the size of the tree its signed checkpoint
        shows, as the records are distinct leaves of it, and every page but the last must be
        full), and only the records' leaf hashes are kept."""
        if type(page_size) is not int or not 1 <= page_size <= 1000:
            raise ValueError(f"page_size must be 1..1000, got {page_size!r}")
        key = pinned(pinned_key)
        held_head = None if held is None else verify_checkpoint(held, key, origin=origin or key.name)
        if held_head is not None:
            refuse_empty_held(held_head)
        wanted = _proof_root(proof_root, "proof_root")
        previous = None
        if after is not None:
            _proof_root(after, "after")
            said = f"the period of the month before ({after})"  # not the one asked for
            try:
                previous = self.verify_period(after, key, origin=origin, page_size=page_size)
            except ProofError as exc:
                raise type(exc)(f"{said}: {exc}") from exc
            except TrueupError as exc:
                raise exc.said_of(said) from exc
        first = self._period_page(wanted, page_size, 0)
        check = PeriodCheck(first, key, origin=origin, expected_root=wanted)  # bounds the rest
        check.add(first)
        while check.records < check.count:
            if check.records != check.pages * page_size:
                break  # a short page before the end: result() says so
            check.add(self._period_page(wanted, page_size, check.records))
        period = check.result()
        if held_head is not None:
            self.check_same_log(TreeHead(period.tree_size, period.tree_root, 0), held_head)
        if previous is not None:
            self.check_chain(previous, period)
        return period

    def check_chain(self, previous: VerifiedPeriod, period: VerifiedPeriod) -> None:
        """Check that ``period`` starts where ``previous``, the customer's period of the month
        before, ends (:func:`~trueup.proof.chain_periods`), and that their trees are of one log
        (:meth:`check_same_log`); both verified before against the pinned key."""
        chain_periods(previous, period)
        self.check_same_log(
            TreeHead(period.tree_size, period.tree_root, 0),
            TreeHead(previous.tree_size, previous.tree_root, 0),
            names=(f"the tree of period {period.period}", f"that of period {previous.period}"),
        )

    def _period_page(self, root: bytes, limit: int, offset: int) -> dict[str, Any]:
        reply = self._send(
            "GET",
            f"/api/v1/verify/0x{root.hex()}",
            params={"limit": str(limit), "offset": str(offset)},
            retry=True,
        )
        document = strict_document(reply, "page", PeriodError)
        data = document.get("data")
        if not isinstance(data, dict):
            raise ProofError(f"page at offset {offset}: the reply holds no period")
        return data


def _proof_root(value: str, name: str) -> bytes:
    match = _ROOT.fullmatch(value.lower())
    if match is None:
        raise ProofError(f"{name} must be 64 hex digits (0x optional), got {value[:80]!r}")
    return bytes.fromhex(match.group(1))
