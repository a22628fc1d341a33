"""Exit 3, nothing checked: what the commands that ask a server (``proof``, ``verify-period``,
``follow``) make of an error that says nothing about the log.

Those commands exit 0 when every check passes, 1 when a check failed or the server refused
what was asked (a 404 for a root it does not know is the server's answer, and a wrong one if
you hold that root from it), 2 when an argument is wrong, and 3 when the server could not be
asked: no reply, a reply that is not the server's (a proxy's page), too many requests (429), or
a failure on its side (5xx). A monitor that alarms on 1 is then not woken by a server that is
down, and one that runs again later on 3 is not told a forged page is a passing outage.
"""

from __future__ import annotations

__all__ = ["NOT_CHECKED", "nothing_checked"]

NOT_CHECKED = 3
"""The exit status when the server could not be asked: nothing was proven, nor disproven."""


def nothing_checked(status: int | None, code: str) -> bool:
    """Whether an error says nothing about the log: ``status`` ``None`` (no reply came), the
    client's ``BAD_REPLY`` (not the server's reply), 429 or any 5xx."""
    return status is None or code == "BAD_REPLY" or status == 429 or status >= 500
