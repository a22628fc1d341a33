"""Text a request gave is quoted in error messages as a JSON string, whatever the status."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from trueup.api.app import create_app
from trueup.service.container import Services, open_services
from trueup.service.settings import Settings

# A double quote, a backslash and a tab: each has an escape of its own in JSON, none in a URL.
AWKWARD = 'a"b\\c\td'
AWKWARD_IN_PATH = "a%22b%5Cc%09d"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    opened = open_services(replace(Settings(), data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/t.db"))
    yield opened
    opened.close()


def _request(services: Services, method: str, target: str) -> httpx.Response:
    key = services.keys.create("acme").key

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, target, headers={"X-Api-Key": key})

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("method", "target", "message"),
    [
        ("GET", f"/api/v1/writes/{AWKWARD_IN_PATH}", 'requestId "a\\"b\\\\c\\td" not found'),
        ("DELETE", f"/api/v1/webhooks/{AWKWARD_IN_PATH}", 'webhook endpoint "a\\"b\\\\c\\td" not found'),
        ("GET", "/api/v1/balance/derive/nobody", 'customer "nobody" has no deltas'),
    ],
)
def test_a_404_quotes_the_id_as_a_json_string(
    services: Services, method: str, target: str, message: str
) -> None:
    reply = _request(services, method, target)
    assert reply.status_code == 404, reply.text
    assert reply.json()["message"] == message


def test_the_quoted_id_reads_back_as_sent(services: Services) -> None:
    message = _request(services, "GET", f"/api/v1/writes/{AWKWARD_IN_PATH}").json()["message"]
    quoted = message.removeprefix("requestId ").removesuffix(" not found")
    assert json.loads(quoted) == AWKWARD


def test_a_customer_id_with_a_quote_and_a_backslash_is_refused_quoting_it(services: Services) -> None:
    """Such a customer id is never stored (letters, digits and ``_ . : -`` only): derive
    refuses it with a 400 that quotes it alike."""
    reply = _request(services, "GET", f"/api/v1/balance/derive/{AWKWARD_IN_PATH}")
    assert reply.status_code == 400, reply.text
    assert reply.json()["message"].endswith(', got "a\\"b\\\\c\\td"')


@pytest.mark.parametrize(
    ("sent", "shown"), [("%E2%80%AE", "\\u202e"), ("%C2%85", "\\u0085"), ("%7F", "\\u007f")]
)
def test_a_character_that_does_not_print_is_shown_escaped(services: Services, sent: str, shown: str) -> None:
    """A right-to-left override, a C1 control or DEL in a name the request gave: the message
    shows it as its escape, never as the raw character (which a terminal or a page would hide
    or act on)."""
    reply = _request(services, "GET", f"/api/v1/balance/webhooks?x{sent}y=1")
    assert reply.status_code == 400, reply.text
    assert reply.json()["message"].startswith(f'"x{shown}y": '), reply.text
