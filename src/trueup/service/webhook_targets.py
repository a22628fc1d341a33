"""Where webhooks may be sent: https, to public addresses, checked after DNS resolution.

An endpoint URL must use ``https`` (``http`` too when the operator sets
``TRUEUP_WEBHOOK_ALLOW_HTTP=1``), carry no credentials, and every address its host resolves to
must be public: loopback, private, link-local, shared (CGNAT), reserved and other non-global
addresses are refused unless the operator sets ``TRUEUP_WEBHOOK_ALLOW_PRIVATE=1``; multicast
never makes sense and is always refused. The check runs when an endpoint is created and again
before every delivery, whose connection then goes to the address that was checked (the
dispatcher pins it), so a name that later resolves elsewhere (DNS rebinding) cannot redirect
a delivery into the operator's network.

This lives in the service layer because both the endpoint use cases and the dispatcher
(``trueup.webhooks``) apply it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from trueup.core.errors import ValidationError
from trueup.core.json_text import quoted
from trueup.core.strict_json import describe

__all__ = [
    "MAX_URL_LENGTH",
    "Resolver",
    "Target",
    "TargetPolicy",
    "TargetRefusedError",
    "address_refusal",
    "resolve_target",
    "system_resolver",
]

MAX_URL_LENGTH = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port)`` → the IP addresses (text) a connection to it may use."""


class TargetRefusedError(ValidationError):
    """The URL breaks the target policy; the message names ``url`` and the reason."""


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """What the operator allows beyond https to public addresses."""

    allow_http: bool = False
    allow_private: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: its parts and the addresses it resolved to, every one allowed."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


def system_resolver(host: str, port: int) -> Sequence[str]:
    """The addresses ``getaddrinfo`` gives for a TCP connection to ``host:port``."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # gaierror, and names the IDNA codec refuses
        raise TargetRefusedError("url", f"host {quoted(host)} does not resolve ({exc})") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


_MULTICAST = "a multicast address"

# Not globally reachable by the IANA special-purpose registries, which the ipaddress module of
# Python 3.11 does not say of all: 192.0.0.0/24 but its two anycast addresses, and 3fff::/20,
# the IPv6 documentation prefix of RFC 9637 (2024).
_NOT_GLOBAL = (ipaddress.ip_network("192.0.0.0/24"), ipaddress.ip_network("3fff::/20"))
_GLOBAL_IN_NOT_GLOBAL = frozenset(ipaddress.ip_address(a) for a in ("192.0.0.9", "192.0.0.10"))


def address_refusal(address: IPAddress, policy: TargetPolicy) -> str | None:
    """Why a delivery may not go to ``address`` under ``policy``, or ``None`` when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        # Addresses that carry an IPv4 address are judged by it (mapped, 6to4).
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address.sixtofour is not None:
            address = address.sixtofour
    if address.is_multicast:
        return _MULTICAST
    if policy.allow_private:
        return None
    checks = (
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_unspecified, "the unspecified address"),
        (isinstance(address, ipaddress.IPv6Address) and address.is_site_local, "a site-local address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public address"),
        (
            any(address in network for network in _NOT_GLOBAL) and address not in _GLOBAL_IN_NOT_GLOBAL,
            "not a public address",
        ),
    )
    for refused, reason in checks:
        if refused:
            return reason
    return None


def _split(url: object, policy: TargetPolicy) -> tuple[str, str, int, str]:
    if not isinstance(url, str):
        raise TargetRefusedError("url", f"must be a string, got {describe(url)}")
    if not url:
        raise TargetRefusedError("url", "must not be empty")
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefusedError("url", f"must be at most {MAX_URL_LENGTH} characters, got {len(url)}")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise TargetRefusedError("url", "must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefusedError("url", f"is not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if policy.allow_http else ("https",)
    if scheme not in allowed:
        hint = (
            ""
            if policy.allow_http or scheme != "http"
            else (" (the operator can allow http with TRUEUP_WEBHOOK_ALLOW_HTTP=1)")
        )
        raise TargetRefusedError(
            "url", f"must be an {' or '.join(allowed)} URL, got {scheme or 'no'} scheme{hint}"
        )
    if parts.username is not None or parts.password is not None:
        raise TargetRefusedError("url", "must not contain credentials (user:password@)")
    if parts.fragment:
        raise TargetRefusedError("url", "must not contain a fragment (#…)")
    host = (parts.hostname or "").lower()
    if not host:
        raise TargetRefusedError("url", "must name a host")
    if port == 0:
        raise TargetRefusedError("url", "port must be 1 to 65535, got 0")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return scheme, _ascii_host(host), port or (443 if scheme == "https" else 80), path


def _ascii_host(host: str) -> str:
    """``host`` as DNS knows it: an internationalised name in the IDNA form that Python's
    resolver looks up, which the Host header and TLS's server name take too (ASCII only)."""
    if host.isascii():
        return host
    try:
        ascii_host = host.encode("idna").decode("ascii")
        again = ascii_host.encode("ascii").decode("idna")
    except UnicodeError as exc:
        raise TargetRefusedError("url", f"host {quoted(host)} is not a valid domain name ({exc})") from exc
    if again != host:
        # IDNA 2003 maps some names to others (faß to fass, a soft hyphen to nothing), where
        # browsers (UTS 46) keep them apart: the delivery would go to a name the URL does not show.
        raise TargetRefusedError(
            "url",
            f"host {quoted(host)} would be looked up as {quoted(ascii_host)}, another name; "
            "give its xn-- form",
        )
    return ascii_host


def resolve_target(url: object, policy: TargetPolicy, resolver: Resolver = system_resolver) -> Target:
    """Check ``url`` and the addresses its host resolves to now.

    Raises :class:`TargetRefusedError` (a 400 naming ``url``) for a bad URL, a host that does
    not resolve, or any resolved address the policy refuses.
    """
    scheme, host, port, path = _split(url, policy)
    assert isinstance(url, str)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    texts = [str(literal)] if literal is not None else list(resolver(host, port))
    if not texts:
        raise TargetRefusedError("url", f"host {quoted(host)} resolves to no address")
    addresses: list[str] = []
    for text in texts:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
        reason = address_refusal(address, policy)
        if reason is not None:
            allowable = reason != _MULTICAST and not policy.allow_private
            raise TargetRefusedError(
                "url",
                f"host {quoted(host)} resolves to {address}, {reason}; webhooks go only to "
                + (
                    "public addresses (the operator can allow others with TRUEUP_WEBHOOK_ALLOW_PRIVATE=1)"
                    if allowable
                    else "unicast addresses (no setting allows multicast)"
                ),
            )
        addresses.append(str(address))
    return Target(url=url, scheme=scheme, host=host, port=port, path=path, addresses=tuple(addresses))
