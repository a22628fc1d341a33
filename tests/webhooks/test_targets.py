"""Target URLs: https only, public addresses only (checked after DNS resolution), unless the
operator allows more; and the delivery is pinned to the address that was checked."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from trueup.core.json_text import quoted
from trueup.service.webhook_targets import (
    TargetPolicy,
    TargetRefusedError,
    resolve_target,
    system_resolver,
)
from trueup.webhooks.targets import pin

STRICT = TargetPolicy()
LOOSE = TargetPolicy(allow_http=True, allow_private=True)
PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"


def resolver_of(table: dict[str, Sequence[str]]):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise TargetRefusedError("url", f"host {quoted(host)} does not resolve")
        return table[host]

    return resolve


PUBLIC_DNS = resolver_of({"hooks.example.com": [PUBLIC_V4, PUBLIC_V6]})


def refused(url: object, policy: TargetPolicy = STRICT, resolver=PUBLIC_DNS) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(TargetRefusedError) as caught:
        resolve_target(url, policy, resolver)
    assert caught.value.field == "url"
    assert caught.value.message.startswith("url: ")
    return caught.value.message


def test_an_https_url_to_public_addresses_is_accepted() -> None:
    target = resolve_target("https://hooks.example.com/trueup?x=1", STRICT, PUBLIC_DNS)
    assert (target.scheme, target.host, target.port) == ("https", "hooks.example.com", 443)
    assert target.path == "/trueup?x=1"
    assert target.addresses == (PUBLIC_V4, PUBLIC_V6)


def test_http_is_refused_unless_the_operator_allows_it() -> None:
    assert "must be an https URL, got http scheme" in refused("http://hooks.example.com/")
    assert "TRUEUP_WEBHOOK_ALLOW_HTTP=1" in refused("http://hooks.example.com/")
    allowed = resolve_target("http://hooks.example.com/", TargetPolicy(allow_http=True), PUBLIC_DNS)
    assert allowed.port == 80


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://hooks.example.com/", "got ftp scheme"),
        ("hooks.example.com/path", "got no scheme"),
        ("https://user:pw@hooks.example.com/", "must not contain credentials"),
        ("https://hooks.example.com/#frag", "must not contain a fragment"),
        ("https:///path", "must name a host"),
        ("https://hooks.example.com:0/", "port must be 1 to 65535"),
        ("https://hooks.example.com:99999/", "is not a valid URL"),
        ("https://hooks.example.com/a b", "spaces or control characters"),
        ("", "must not be empty"),
        ("https://hooks.example.com/" + "a" * 2048, "at most 2048 characters"),
        (42, "must be a string, got 42"),
        (None, "must be a string, got null"),
    ],
)
def test_malformed_urls_are_refused_naming_the_problem(url: object, problem: str) -> None:
    assert problem in refused(url)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fd00::1", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("0.0.0.0", "the unspecified address"),
        ("100.64.0.1", "not a public address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("2002:7f00:1::", "a loopback address"),
        ("2002:a01:203::1", "a private address"),
        ("fec0::1", "a site-local address"),
        ("224.0.0.1", "a multicast address"),
        ("192.0.0.8", "not a public address"),  # IANA: not global; Python 3.11 says it is
        ("192.0.0.255", "not a public address"),
        ("3fff::1", "not a public address"),  # RFC 9637 documentation; Python 3.11 says global
        ("3fff:fff:ffff::1", "not a public address"),
    ],
)
def test_non_public_addresses_are_refused_after_resolution(address: str, kind: str) -> None:
    resolver = resolver_of({"inside.example.com": [address]})
    message = refused("https://inside.example.com/hook", resolver=resolver)
    assert f"resolves to {ipaddress.ip_address(address)}, {kind}" in message


def test_a_name_with_any_private_address_among_public_ones_is_refused() -> None:
    resolver = resolver_of({"mixed.example.com": [PUBLIC_V4, "10.0.0.7"]})
    assert "10.0.0.7, a private address" in refused("https://mixed.example.com/", resolver=resolver)


def test_an_ip_literal_is_checked_without_dns() -> None:
    assert "a link-local address" in refused("https://[fe80::1]/", resolver=resolver_of({}))
    literal = resolve_target(f"https://{PUBLIC_V4}:8443/h", STRICT, resolver_of({}))
    assert literal.addresses == (PUBLIC_V4,) and literal.port == 8443


def test_the_system_resolver_is_used_so_names_of_the_loopback_are_refused() -> None:
    assert "a loopback address" in refused("https://localhost/hook", resolver=system_resolver)
    # A numeric name that only the resolver turns into 127.0.0.1.
    assert "127.0.0.1, a loopback address" in refused("https://2130706433/", resolver=system_resolver)


def test_a_name_that_does_not_resolve_is_refused() -> None:
    assert "does not resolve" in refused("https://nowhere.example.com/")


def test_the_operator_may_allow_loopback_and_private_but_never_multicast() -> None:
    target = resolve_target("http://localhost:8080/hook", LOOSE)
    assert set(target.addresses) <= {"127.0.0.1", "::1"} and target.addresses
    assert resolve_target("https://10.0.0.1/", LOOSE).addresses == ("10.0.0.1",)
    assert "multicast" in refused("https://224.0.0.1/", LOOSE)
    # and the message does not point at a setting that cannot help
    assert refused("https://224.0.0.1/", LOOSE).endswith("unicast addresses (no setting allows multicast)")
    assert refused("https://[::ffff:224.0.0.1]/").endswith("(no setting allows multicast)")
    assert refused("https://10.0.0.1/").endswith("with TRUEUP_WEBHOOK_ALLOW_PRIVATE=1)")


def test_a_delivery_is_pinned_to_the_checked_address_with_host_and_sni_kept() -> None:
    pinned = pin(resolve_target("https://hooks.example.com/in?a=1", STRICT, PUBLIC_DNS))
    assert pinned.url == f"https://{PUBLIC_V4}/in?a=1"
    assert pinned.host_header == "hooks.example.com"
    assert pinned.sni_hostname == "hooks.example.com"
    v6 = pin(
        resolve_target(
            "https://hooks.example.com:8443/", STRICT, resolver_of({"hooks.example.com": [PUBLIC_V6]})
        )
    )
    assert v6.url == f"https://[{PUBLIC_V6}]:8443/"
    assert v6.host_header == "hooks.example.com:8443"


def test_plain_http_and_ip_literals_send_no_server_name() -> None:
    plain = pin(resolve_target("http://127.0.0.1:9000/hook", LOOSE))
    assert (plain.url, plain.host_header, plain.sni_hostname) == (
        "http://127.0.0.1:9000/hook",
        "127.0.0.1:9000",
        None,
    )
    literal = pin(resolve_target(f"https://[{PUBLIC_V6}]/", STRICT))
    assert literal.host_header == f"[{PUBLIC_V6}]" and literal.sni_hostname is None


def test_the_two_anycast_addresses_of_192_0_0_0_24_are_public() -> None:
    for address in ("192.0.0.9", "192.0.0.10"):
        assert resolve_target(f"https://{address}/", STRICT).addresses == (address,)


def test_an_internationalised_host_is_used_as_dns_knows_it() -> None:
    asked: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return [PUBLIC_V4]

    pinned = pin(resolve_target("https://B\u00fccher.example/in", STRICT, resolver))
    assert asked == ["xn--bcher-kva.example"]
    assert (pinned.host_header, pinned.sni_hostname) == ("xn--bcher-kva.example", "xn--bcher-kva.example")
    assert "is not a valid domain name" in refused(
        "https://" + "\u00fc" * 64 + ".example/", resolver=resolver
    )
    # Names IDNA 2003 maps to other names, which browsers keep apart, are refused.
    assert refused("https://fa\u00df.example/", resolver=resolver).endswith(
        'would be looked up as "fass.example", another name; give its xn-- form'
    )
    assert 'would be looked up as "example.com"' in refused("https://ex\u00adample.com/", resolver=resolver)
    assert asked == ["xn--bcher-kva.example"]  # neither was looked up


def test_a_path_and_query_go_percent_encoded_as_http_clients_send_them() -> None:
    pinned = pin(
        resolve_target(
            'https://hooks.example.com/h/\u00fc/a|b"c<d>{e}`?name=Jos\u00e9&x=%41', STRICT, PUBLIC_DNS
        )
    )
    assert pinned.url == f"https://{PUBLIC_V4}/h/%C3%BC/a%7Cb%22c%3Cd%3E%7Be%7D%60?name=Jos%C3%A9&x=%41"
