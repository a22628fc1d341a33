"""Refusing names a request gives that nothing takes: a query parameter a route does not
declare, a field that the body of a compare (or one of its monthly nets), a period lock or a
webhook endpoint's creation does not read.

Ignored, a misspelt name would change nothing, and the reply would answer another question
than the one asked, with a 200: a compare over the whole history instead of one month
(``"peroid"``), a balance from 0 instead of from the agreed starting balance. The error names
the name as sent, the one probably meant, and the names that are taken.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from trueup.core.errors import ValidationError
from trueup.core.json_text import quoted

__all__ = ["refuse_unknown"]

_SHOWN_NAME = 64
"""The longest name an error repeats (a name is the client's text, of any length)."""


def refuse_unknown(
    given: Iterable[str], taken: tuple[str, ...], what: str, within: str = "", taker: str = "this route"
) -> None:
    """Raise :class:`ValidationError` for the first of ``given`` not in ``taken``: ``what`` is
    what such a name is (``"query parameter"``, ``"field"``); ``within`` the path of the object
    that holds it (``"theirWindows[2]"``, empty for the body or the query) and ``taker`` what
    takes the names, as the message says it."""
    for name in given:
        if name not in taken:
            shown = _shown(name)
            raise ValidationError(
                f"{within}.{shown}" if within else shown, _problem(name, taken, what, taker)
            )


def _problem(name: str, taken: tuple[str, ...], what: str, taker: str) -> str:
    if not taken:
        return f"unknown {what}: {taker} takes none"
    lower = name.lower()
    meant = [known for known in taken if known.lower() == lower]
    meant = meant or difflib.get_close_matches(name, taken, n=1, cutoff=0.75)
    # Another API's name for it, which this route qualifies: limit for deltaLimit.
    meant = meant or [known for known in taken if len(lower) >= 4 and known.lower().endswith(lower)][:1]
    hint = f"did you mean {meant[0]}? " if meant else ""
    return f"unknown {what}; {hint}{taker} takes {', '.join(taken)}"


def _shown(name: str) -> str:
    """The name as an error shows it: as sent when it is short and printable, else quoted."""
    if name and len(name) <= _SHOWN_NAME and name.isprintable() and name.strip() == name:
        return name
    return quoted(name[:_SHOWN_NAME]) + ("…" if len(name) > _SHOWN_NAME else "")
