"""A bug's 500 is answered in the error envelope and counted in /metrics like every reply."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from fastapi import FastAPI

from trueup.api.errors import install_error_handlers, quiet_relogged_errors
from trueup.api.metrics import ResponseCounter
from trueup.service.metrics import HTTP_RESPONSES


def _count(route: str, status: str) -> float:
    return float(HTTP_RESPONSES.labels(route, status)._value.get())


async def _get(app: FastAPI, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path)


def test_an_unhandled_error_is_a_500_with_an_id_and_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(ResponseCounter)

    @app.get("/boom/{name}")
    async def boom(name: str) -> None:
        raise RuntimeError(f"a bug in {name}")

    before = _count("/boom/{name}", "5xx")
    with caplog.at_level(logging.ERROR):
        response = asyncio.run(_get(app, "/boom/x"))
    assert response.status_code == 500
    body = response.json()
    assert (body["code"], body["message"]) == (
        "INTERNAL_ERROR",
        "internal error; quote this id when reporting it",
    )
    assert body["requestId"].startswith("err_")
    assert "a bug in x" not in response.text  # no stack trace, no exception text
    assert body["requestId"] in caplog.text
    assert _count("/boom/{name}", "5xx") == before + 1


def test_the_server_does_not_log_an_answered_error_a_second_time() -> None:
    """Starlette raises it again after the reply, and uvicorn logged its traceback once more,
    without the id: read as a second error."""
    app = FastAPI()
    install_error_handlers(app)
    raised: list[Exception] = []

    @app.get("/boom")
    async def boom() -> None:
        raised.append(RuntimeError("a bug"))
        raise raised[0]

    assert asyncio.run(_get(app, "/boom")).status_code == 500
    quiet_relogged_errors()
    uvicorn_log = logging.getLogger("uvicorn.error")

    def record(exc: Exception) -> logging.LogRecord:
        return uvicorn_log.makeRecord(
            "uvicorn.error",
            logging.ERROR,
            __file__,
            1,
            "Exception in ASGI application",
            (),
            (type(exc), exc, None),
        )

    assert not uvicorn_log.filter(record(raised[0]))
    assert uvicorn_log.filter(record(RuntimeError("one the app never saw")))  # still logged
