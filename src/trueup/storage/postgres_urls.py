"""The database URL of a PostgreSQL connection: named after its process, and shown without
its passwords when a connection fails."""

from __future__ import annotations

import os
from urllib.parse import unquote

from psycopg.conninfo import make_conninfo

from trueup.core.url_passwords import query_passwords

__all__ = ["cannot_connect", "named_url"]


def named_url(url: str, purpose: str = "") -> str:
    """``url`` with ``application_name`` ``trueup/<pid>`` for this process's connections (with
    ``/<purpose>`` for a connection of one purpose), unless it names one: ``pg_stat_activity``
    then says which Trueup process holds each backend (the benchmark charges each backend's CPU
    to that process this way)."""
    if "application_name" in url:
        return url
    name = f"trueup/{os.getpid()}" + (f"/{purpose}" if purpose else "")
    return make_conninfo(url, application_name=name)


def _passwords(url: str) -> list[str]:
    """The passwords ``url`` holds (of its ``user:password@`` part and of ``password=`` or
    ``sslpassword=`` in its query), as written and percent-decoded, longest first.

    The user part ends at the first ``@`` before any ``/``, and the password at that ``@``, as
    libpq reads a URI."""
    rest = url.partition("://")[2]
    found: list[str] = []
    authority, at, _ = rest.partition("@")
    if at and "/" not in authority and ":" in authority:
        found.append(authority.partition(":")[2])
    found += query_passwords(rest)
    found += [unquote(secret) for secret in found]
    return sorted({secret for secret in found if secret}, key=len, reverse=True)


def _without_passwords(message: str, url: str) -> str:
    """``message`` with every password of ``url`` in it shown as ``***``: libpq's message on a
    URL it cannot parse quotes the URL, or the part it stopped at, password and all, and it
    goes to stderr or a log, which a service manager keeps and others may read."""
    for secret in _passwords(url):
        message = message.replace(secret, "***")
    return message


def cannot_connect(url: str, cause: str) -> str:
    """Why a connection failed, naming the database URL it was made to (the one the settings
    chose, which may not be the one meant), passwords shown as ``***`` in both."""
    cause = " ".join(_without_passwords(cause, url).split())  # libpq's message spans lines
    return f"cannot connect to PostgreSQL at {_without_passwords(url, url)}: {cause}"
