"""The sentences of a discrepancy report: plain integers, months in words."""

from __future__ import annotations

from collections.abc import Sequence

from trueup.core.compare.values import (
    PAIR_KINDS,
    DivergentParty,
    Explanation,
    Finding,
    MonthNet,
    WindowToReview,
)
from trueup.core.periods import period_label

__all__ = ["recommendation", "resolution"]


def _stated_by(diff: int) -> str:
    return "overstated" if diff > 0 else "understated"


def resolution(your_diff: int, their_diff: int) -> str:
    if your_diff == 0:
        return f"Your balance is correct. The counterparty is {_stated_by(their_diff)} by {abs(their_diff)}."
    if their_diff == 0:
        return (
            f"The counterparty's balance is correct. Your balance is {_stated_by(your_diff)} "
            f"by {abs(your_diff)}."
        )
    return (
        f"Neither balance is correct. Your balance is {_stated_by(your_diff)} by "
        f"{abs(your_diff)} and the counterparty is {_stated_by(their_diff)} by {abs(their_diff)}."
    )


_OPENING: dict[DivergentParty, str] = {
    "theirs": "Share this report with the counterparty.",
    "yours": "Review your own records.",
    "both": "Share this report with the counterparty and review your own records.",
}


def recommendation(
    divergent: DivergentParty,
    findings: Sequence[Finding],
    time_scoped: bool = False,
    months: Sequence[MonthNet] = (),
) -> str:
    """The report's text; ``months`` (the months in scope) and ``time_scoped`` decide how it
    advises narrowing a search."""
    narrow = _narrowing(time_scoped, months)
    unchecked = _unchecked(months)
    parts = [_OPENING[divergent]]
    for finding in findings:
        text = _localisation(finding, narrow, unchecked, months)
        if divergent == "both":
            side = "your" if finding.party == "yours" else "their"
            text = f"On {side} side, {text[0].lower()}{text[1:]}"
        parts.append(text)
    return " ".join(parts)


def _narrowing(time_scoped: bool, months: Sequence[MonthNet]) -> str:
    """How to narrow a search: within one month, a shorter date range (a period checkpoint
    locks whole months, so none falls inside it); else a later period checkpoint already taken,
    or one month (never advice to lock one: a lock closes every month before it, for good); under
    a time scope, which no checkpoint can be combined with, a shorter time scope."""
    if len(months) == 1:
        return (
            f"compare over a shorter date range within {period_label(months[0].period)} (startDate, endDate)"
        )
    if not time_scoped:
        return (
            "pass a later locked period's checkpoint as startingCheckpoint, or compare one period "
            "(period=YYYY-MM)"
        )
    return "compare over a shorter time scope (one period=YYYY-MM)"


def _unchecked(months: Sequence[MonthNet]) -> tuple[str, str]:
    """What a search the work bound cut short left unchecked, and what that means: other
    months, or, when the scope holds one month, that month's other deltas (there are no other
    months to blame)."""
    if len(months) == 1:
        label = period_label(months[0].period)
        return f"before every delta of {label} was checked", f"so other deltas of {label} may explain it too"
    return "before every month was checked", "so other months may explain it too"


def _localisation(f: Finding, narrow: str, unchecked: tuple[str, str], months: Sequence[MonthNet]) -> str:
    """``months``: the months of the verified deltas in scope (none: there is no search to
    narrow; one: no other month can be the origin, and per-month nets name no other)."""
    owner = "your" if f.party == "yours" else "their"
    labels = [period_label(w.period) for w in f.windows]
    off_by = f"the {abs(f.difference)} by which {owner} balance is {_stated_by(f.difference)}"
    field_name = "yourWindows" if f.party == "yours" else "theirWindows"
    if f.mode == "none":
        if not months:  # a narrower scope than one with no delta would hold none either
            return (
                f"No verified delta is in the compared scope, so none explains {off_by}. Check the "
                f"agreed starting balance and the scope, or send {owner} per-month nets as {field_name}."
            )
        text = f"No single delta, and no pair of deltas within one month, explains {off_by}."
        if f.exhausted:
            text += f" The search stopped at its work limit {unchecked[0]}."
            return f"{text} To narrow it, {narrow}, or send {owner} per-month nets as {field_name}."
        # Every delta in scope was searched: a narrower scope holds a subset, and finds nothing
        # either. What is left is the starting point, or several deltas that nets localise.
        return (
            f"{text} Every verified delta in the compared scope was searched, so a narrower scope "
            f"would find none either; check the agreed starting balance and the scope, or send "
            f"{owner} per-month nets as {field_name} to find the periods that differ."
        )
    if f.mode == "stated":
        return _stated_text(f, owner, labels, off_by)
    if f.truncated:
        return _truncated_text(f, owner, field_name, labels, narrow, months)
    if len(f.windows) == 1:
        text = f"The discrepancy originates in the {labels[0]} period where {_phrases(f.windows[0], owner)}."
    else:
        what = "a delta" if f.mode == "single" else "a pair of deltas"
        text = (
            f"The discrepancy originates in one of {len(labels)} periods, {_listing(labels, 'or')},"
            f" each holding {what} that explains it exactly; in {labels[0]}, "
            f"{_phrases(f.windows[0], owner)}."
        )
    if f.exhausted:  # what was found is right, but other months (or deltas) went unsearched
        where, meaning = unchecked
        text += f" The search stopped at its work limit {where}, {meaning}; {narrow} to narrow the search."
    return text


def _truncated_text(
    f: Finding, owner: str, field_name: str, labels: Sequence[str], narrow: str, months: Sequence[MonthNet]
) -> str:
    """More deltas (or pairs) fit than are listed: the most recent are named, not as the origin."""
    # The listed deltas are the most recently recorded of those that fit; older ones, in
    # these periods or others, fit as well, so no period is named as the origin.
    kind = "deltas" if f.mode == "single" else "pairs of deltas"
    first = _phrases(f.windows[0], owner)
    text = f"The most recently recorded {kind} that explain it exactly are in "
    if len(labels) == 1:
        text += f"the {labels[0]} period, where {first}."
    else:
        text += f"{_listing(labels, 'and')}; in {labels[0]}, {first}."
    if len(months) == 1:  # the month is known: which of its deltas is what is left open
        return (
            f"{text} More {kind} of {labels[0]} that explain it exactly exist than are listed, "
            f"and every delta in the compared scope is in that month, so any of them may be "
            f"the one: {narrow} to narrow the search."
        )
    return (
        f"{text} More {kind} that explain it exactly exist than are listed, in these periods "
        f"or others, so it may originate in another period: send {owner} per-month nets as "
        f"{field_name} to find the period, or {narrow} to narrow the search."
    )


def _stated_text(f: Finding, owner: str, labels: Sequence[str], off_by: str) -> str:
    if not f.windows:
        return (
            f"{owner.capitalize()} stated monthly nets match the verified net of every month, so "
            f"{off_by} is not in any month; check the agreed starting balance and "
            f"startingCheckpoint."
        )
    details = []
    for w in f.windows:
        if w.period in f.unlisted:  # counted as 0: no entries in the party's books
            detail = (
                f"{owner} monthly nets do not list it, which counts as a net of 0, while the "
                f"verified net is {w.expected_net}"
            )
        else:
            detail = (
                f"{owner} stated net of {w.their_net} differs from the verified net of "
                f"{w.expected_net} by {w.difference}"
            )
        details.append(f"{detail}; {_phrases(w, owner)}" if w.candidates else detail)
    if len(f.windows) == 1:
        text = f"The discrepancy originates in the {labels[0]} period, where {details[0]}."
    else:
        text = f"The discrepancy originates in {len(labels)} periods: {_listing(labels, 'and')}."
        text += "".join(f" In {lbl}, {d}." for lbl, d in zip(labels, details, strict=True))
    explained = sum(w.difference for w in f.windows)
    if explained != f.difference:
        text += (
            f" {owner.capitalize()} stated monthly nets explain {explained} of {owner} "
            f"difference of {f.difference}; the remaining {f.difference - explained} is not in "
            f"any month, so check the agreed starting balance and startingCheckpoint."
        )
    if f.exhausted:  # a month's candidates come from its newest deltas only: say so
        text += (
            " The search for the deltas behind these months stopped at its work limit after "
            "reading their most recently recorded deltas, so a month may hold deltas that explain "
            "it and are not listed; compare over a shorter date range within it (startDate, "
            "endDate) to narrow the search."
        )
    return text


def _phrases(window: WindowToReview, owner: str) -> str:
    """What the window's candidates say happened, distinct phrases joined by "or"."""
    phrases: list[str] = []
    found, i = window.candidates, 0
    while i < len(found):
        c = found[i]
        if c.explanation in PAIR_KINDS and i + 1 < len(found):
            other = found[i + 1]
            what = "were not reflected in"
            if c.explanation == "pair_duplicated":
                what = "were each counted twice in"
            phrase = f"{_unit(c.delta)} and {_unit(other.delta)} {what} {owner} records"
            i += 2
        else:
            phrase = f"{_unit(c.delta)} {_single_verb(c.explanation, c.delta)} {owner} records"
            i += 1
        if phrase not in phrases:
            phrases.append(phrase)
    return " or ".join(phrases)


def _noun(amount: int) -> str:
    return "debit" if amount < 0 else "credit"


def _unit(amount: int) -> str:
    """``"a 500-unit debit"``, ``"an 800-unit credit"``: the article follows how the number is
    read (eight…, eleven…, eighteen… take "an"), reading the leading group of three digits."""
    digits = str(abs(amount))
    lead = digits[: len(digits) % 3 or 3]
    article = "an" if lead.startswith("8") or lead in ("11", "18") else "a"
    return f"{article} {digits}-unit {_noun(amount)}"


def _single_verb(kind: Explanation, delta: int) -> str:
    if kind == "duplicated":
        return "was counted twice in"
    if kind == "sign_flipped":
        return f"was recorded as a {_noun(-delta)} in"
    return "was not reflected in"


def _listing(items: Sequence[str], conjunction: str) -> str:
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"
