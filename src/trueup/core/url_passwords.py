"""A URL as it may be shown: in a message to stderr, which a service manager keeps, or to a
user who did not give it."""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["query_passwords", "without_password"]


def without_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part, and one given as ``password=``
    (or ``sslpassword=``), if any, shown as ``***``.

    A message naming a refused URL goes to stderr, which a service manager keeps. The
    authority is taken to end at the last ``@``, so a password holding ``/``, ``?`` or ``@``
    is hidden whole (an ``@`` further on hides more than the password, never less).
    """
    url = _query_passwords_hidden(url)
    # One in libpq's keyword form (host=db password='a b'), which is refused but named in the
    # refusal, to the end of its value: quoted, or up to a space that no backslash escapes.
    url = re.sub(r"(?i)((?:^|\s)(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|(?:\\.|\S)*)", r"\1***", url)
    # The scheme's slashes are counted loosely: postgresql:/user:password@host is a typo of it.
    found = re.fullmatch(r"(?s)([A-Za-z][A-Za-z0-9+.-]*:/*)(.*)@(.*)", url)
    if found is None:
        return url
    scheme, userinfo, host = found.groups()
    user, colon, _ = userinfo.partition(":")
    if not colon or "/" in user:
        return url
    return f"{scheme}{user}:***@{host}"


_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


def _is_secret(pair: str) -> bool:
    """Whether ``pair`` (``name=value`` of a query) gives a password, read as libpq reads it:
    the name may be percent-encoded (``pass%77ord``)."""
    name, equals, _ = pair.partition("=")
    return bool(equals) and unquote(name).lower() in _SECRET_PARAMETERS


def query_passwords(url: str) -> list[str]:
    """The values, as written, of the ``password=`` and ``sslpassword=`` parameters of ``url``'s
    query (after its first ``?``; a value runs to the next ``&``, ``#`` being part of it)."""
    return [pair.partition("=")[2] for pair in url.partition("?")[2].split("&") if _is_secret(pair)]


def _query_passwords_hidden(url: str) -> str:
    """``url`` with the value of each of its query's passwords (:func:`query_passwords`) shown
    as ``***``."""
    start, question, query = url.partition("?")
    if not question:
        return url
    pairs = (f"{pair.partition('=')[0]}=***" if _is_secret(pair) else pair for pair in query.split("&"))
    return f"{start}?{'&'.join(pairs)}"
