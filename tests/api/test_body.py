"""Reading a request body from its ASGI messages: chunks, limits, the timer, leaving clients."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from starlette.requests import Request

from trueup.api.body import BODIES_IN_FLIGHT, check_json_head, read_json
from trueup.core.errors import (
    PayloadTooLargeError,
    RateLimitedError,
    RequestTimeoutError,
    UnavailableError,
    ValidationError,
)
from trueup.service.settings import Settings

_HEADERS = [(b"content-type", b"application/json")]


def _request(messages: list[dict[str, Any]], then: Callable[[], Awaitable[dict[str, Any]]]) -> Request:
    """A request whose body arrives as ``messages``; a receive after them awaits ``then``."""
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        return await then()

    return Request({"type": "http", "method": "POST", "headers": _HEADERS}, receive)


async def _never() -> dict[str, Any]:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def _run(request: Request, settings: Settings) -> tuple[Any, bytes]:
    return asyncio.run(read_json(request, settings, "ten_test"))


def test_a_body_in_chunks_is_joined() -> None:
    parts = [b'{"a":', b" [1, 2", b"]}"]
    messages = [{"type": "http.request", "body": part, "more_body": True} for part in parts]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    document, body = _run(_request(messages, _never), Settings())
    assert document == {"a": [1, 2]}
    assert body == b'{"a": [1, 2]}'


def test_a_body_past_the_limit_in_chunks_is_a_413() -> None:
    messages = [{"type": "http.request", "body": b"[" + b"1," * 10, "more_body": True}] * 3
    with pytest.raises(PayloadTooLargeError, match="at most 50 bytes"):
        _run(_request(messages, _never), replace(Settings(), max_body_bytes=50))


def test_a_client_that_leaves_mid_body_is_a_400() -> None:
    messages = [{"type": "http.request", "body": b"[1,", "more_body": True}, {"type": "http.disconnect"}]
    with pytest.raises(ValidationError, match="ended early"):
        _run(_request(messages, _never), Settings())


def test_a_body_that_stops_arriving_is_a_408_and_leaves_the_task_uncancelled() -> None:
    async def scenario() -> int:
        request = _request([{"type": "http.request", "body": b"[1,", "more_body": True}], _never)
        with pytest.raises(RequestTimeoutError, match=r"within 0.05 s \(3 bytes came\)"):
            await read_json(request, replace(Settings(), body_timeout_s=0.05), "ten_test")
        task = asyncio.current_task()
        assert task is not None
        await asyncio.sleep(0)  # a task still marked as cancelling would be cancelled again here
        return task.cancelling()

    assert asyncio.run(scenario()) == 0


def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    async def scenario() -> None:
        request = _request([], _never)
        reading = asyncio.create_task(read_json(request, replace(Settings(), body_timeout_s=30), "ten_test"))
        await asyncio.sleep(0.01)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading

    asyncio.run(scenario())


def test_the_timer_is_gone_once_the_body_is_in() -> None:
    async def scenario() -> None:
        request = _request([{"type": "http.request", "body": b"[1]", "more_body": False}], _never)
        assert await read_json(request, replace(Settings(), body_timeout_s=0.02), "ten_test") == ([1], b"[1]")
        await asyncio.sleep(0.1)  # a timer left running would cancel this task here

    asyncio.run(scenario())


def test_a_cancellation_from_elsewhere_as_the_timer_fires_stays_a_cancellation() -> None:
    async def cancelled_again() -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:  # the timer's; someone else cancels the task meanwhile
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            raise
        raise AssertionError("unreachable")

    async def scenario() -> None:
        request = _request([], cancelled_again)
        reading = asyncio.create_task(
            read_json(request, replace(Settings(), body_timeout_s=0.02), "ten_test")
        )
        with pytest.raises(asyncio.CancelledError):
            await reading

    asyncio.run(scenario())


def test_a_body_in_many_small_chunks_is_joined_and_other_messages_skipped() -> None:
    text = b"[" + b"0," * 20_000 + b"0]"
    parts = [text[i : i + 2] for i in range(0, len(text), 2)]
    messages = [{"type": "http.request", "body": part, "more_body": True} for part in parts]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    messages.insert(1, {"type": "http.response.debug"})  # not part of the body: skipped
    document, body = _run(_request(messages, _never), Settings())
    assert body == text
    assert len(document) == 20_001


@pytest.mark.parametrize(
    ("declared", "too_large"),
    [("1048576", False), ("1048577", True), ("0" * 5_000 + "2", False), ("0" * 5_000 + "2000000", True)],
)
def test_a_declared_length_is_judged_whatever_its_leading_zeros(declared: str, too_large: bool) -> None:
    """The parser takes any number of leading zeros, and ``int()`` of more than 4,300 digits
    raised: a 500."""
    if too_large:
        with pytest.raises(PayloadTooLargeError, match=r"at most 1048576 bytes, got [12]\d*$"):
            check_json_head("application/json", declared, 1_048_576)
    else:
        check_json_head("application/json", declared, 1_048_576)


def test_every_ending_gives_back_the_bytes_held_and_a_share_is_per_tenant() -> None:
    """The bytes a body holds while it arrives (BODIES_IN_FLIGHT) are given back however it
    ends: read whole, past the size (413), the client gone (400), too slow (408), refused for
    the bound (429 or 503)."""
    tight = replace(Settings(), max_body_bytes=1_024, body_bytes_in_flight=4_096, body_timeout_s=0.05)
    chunk = {"type": "http.request", "body": b"[" + b" " * 999, "more_body": True}
    endings: list[tuple[list[dict[str, Any]], type[Exception] | None]] = [
        ([{"type": "http.request", "body": b"[1]", "more_body": False}], None),
        ([chunk, chunk], PayloadTooLargeError),
        ([chunk, {"type": "http.disconnect"}], ValidationError),
        ([chunk], RequestTimeoutError),
    ]
    before, holding = BODIES_IN_FLIGHT.held, BODIES_IN_FLIGHT.holding()
    endings.append(([{"type": "http.request", "body": b"", "more_body": False}], ValidationError))  # empty
    for messages, refused in endings:
        request = _request(messages, _never)
        if refused is None:
            _run(request, tight)
        else:
            with pytest.raises(refused):
                _run(request, tight)
        assert (BODIES_IN_FLIGHT.held, BODIES_IN_FLIGHT.holding()) == (before, holding)

    async def crowded() -> None:
        # Four tenants hold 1,000 bytes each (a share is 1,024 here: one body of the largest
        # size): a second body of one of them is a 429; a fifth tenant's body of 1,000 would
        # pass the 4,096 of the process, a 503, while a small one fits.
        waits = [
            asyncio.create_task(
                read_json(_request([chunk], _never), replace(tight, body_timeout_s=5), tenant)
            )
            for tenant in ("ten_a", "ten_b", "ten_c", "ten_d")
        ]
        await asyncio.sleep(0.01)
        assert BODIES_IN_FLIGHT.held == before + 4_000
        with pytest.raises(RateLimitedError, match="this tenant's requests hold 1,000 bytes"):
            await read_json(_request([chunk], _never), tight, "ten_a")
        with pytest.raises(UnavailableError, match="holds 4,000 bytes of request bodies still arriving"):
            await read_json(_request([chunk], _never), tight, "ten_e")
        small = {"type": "http.request", "body": b"[1]", "more_body": False}
        assert await read_json(_request([small], _never), tight, "ten_e") == ([1], b"[1]")
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)

    asyncio.run(crowded())
    assert (BODIES_IN_FLIGHT.held, BODIES_IN_FLIGHT.holding()) == (before, holding)
