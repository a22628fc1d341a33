"""Sending a delivery to the address that passed the target policy, and nowhere else.

The policy itself (https, public addresses after DNS resolution) is
:mod:`trueup.service.webhook_targets`, shared with endpoint creation. Here a checked
:class:`~trueup.service.webhook_targets.Target` becomes a request to the IP address that was
checked: the URL names the address, ``Host`` names the host, and TLS uses the host as its
server name (SNI) and checks the certificate against it. A second DNS lookup by the HTTP
client, which could answer differently, never happens.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import quote

from trueup.service.webhook_targets import Target

__all__ = ["PinnedRequest", "pin"]

_DEFAULT_PORTS = {"https": 443, "http": 80}
_PATH_SAFE = "/?#[]@!$&'()*+,;=:%~-._"
"""What a path and query keep as they are (RFC 3986's reserved and unreserved characters, and
``%`` for escapes already made); anything else, non-ASCII text included, is percent-encoded as
UTF-8, as browsers and HTTP clients send it."""


@dataclass(frozen=True, slots=True)
class PinnedRequest:
    """Where and how to connect: ``url`` holds the checked address in place of the host."""

    url: str
    host_header: str
    sni_hostname: str | None
    address: str


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def pin(target: Target) -> PinnedRequest:
    """The request for ``target`` pinned to its first checked address."""
    address = target.addresses[0]
    default = _DEFAULT_PORTS[target.scheme] == target.port
    suffix = "" if default else f":{target.port}"
    try:
        ipaddress.ip_address(target.host)
        is_literal = True
    except ValueError:
        is_literal = False
    return PinnedRequest(
        url=f"{target.scheme}://{_bracketed(address)}{suffix}{quote(target.path, safe=_PATH_SAFE)}",
        host_header=_bracketed(target.host) + suffix,
        sni_hostname=target.host if target.scheme == "https" and not is_literal else None,
        address=address,
    )
