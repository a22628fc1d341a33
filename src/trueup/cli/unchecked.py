"""Exit 3, nothing checked: what the commands that ask a server (``proof``, ``verify-period``,
``follow``) make of an error that says nothing about the log.

Those commands exit 0 when every check passes, 1 when a check failed or the server refused
what was asked (a 404 for a root it does not know is the server's answer, and a wrong one if
you hold that root from it), 2 when an argument is wrong, and 3 when the server could not be
asked: no reply, a reply that is not the server's (a proxy's page), too many requests (429), or
a failure on its side (5xx). A monitor that alarms on 1 is then not woken by a server that is
down. A 3 proves nothing either way, so one that lasts is worth an alarm of its own: a server
can hide its state by answering nothing, and a page that is not the server's (forged or not) is
a 3 as well.
"""

from __future__ import annotations

from trueup.sdk import TrueupError

__all__ = ["NOT_CHECKED", "nothing_checked", "nothing_checked_by"]

NOT_CHECKED = 3
"""The exit status when the server could not be asked: nothing was proven, nor disproven."""


def nothing_checked(status: int | None, servers_reply: bool) -> bool:
    """Whether an error says nothing about the log: no reply came (``status`` ``None``), the
    reply is not the server's (``servers_reply`` false: not its JSON, or a body that could not
    be decoded), or the server answered 429 or a 5xx.

    Whether a reply is the server's is the client's own reading, never the ``code`` a reply
    names: a server cannot turn its refusal into a 3 by calling it ``BAD_REPLY``."""
    return status is None or not servers_reply or status == 429 or status >= 500


def nothing_checked_by(error: TrueupError) -> bool:
    """:func:`nothing_checked` for the Python client's error: a reply that is not the server's
    is its ``BAD_REPLY`` without a body (one the server sent carries the body it came in)."""
    return nothing_checked(error.status, not (error.code == "BAD_REPLY" and error.body is None))
