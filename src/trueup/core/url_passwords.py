"""A URL as it may be shown: in a message to stderr, which a service manager keeps, or to a
user who did not give it."""

from __future__ import annotations

import re

__all__ = ["without_password"]


def without_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part, and one given as ``password=``
    (or ``sslpassword=``), if any, shown as ``***``.

    A message naming a refused URL goes to stderr, which a service manager keeps. The
    authority is taken to end at the last ``@``, so a password holding ``/``, ``?`` or ``@``
    is hidden whole (an ``@`` further on hides more than the password, never less).
    """
    # A password given as a query parameter (libpq takes ?password= and ?sslpassword=) is hidden
    # to the next & or #, and one in libpq's keyword form (host=db password='a b'), which is
    # refused but named in the refusal, to the end of its value: quoted, or up to a space that
    # no backslash escapes (& and # are part of it there).
    url = re.sub(r"(?i)([?&](?:ssl)?password=)[^&#]*", r"\1***", url)
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
