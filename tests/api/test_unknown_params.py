"""A query parameter the route does not take is refused, on every route, naming it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from trueup.api.app import ROUTERS, create_app
from trueup.api.unknown_params import RefusingUnknownParameters
from trueup.core.scopes import DERIVE_PARAMS
from trueup.service.container import Services, open_services
from trueup.service.settings import Settings


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    opened = open_services(replace(Settings(), data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/t.db"))
    yield opened
    opened.close()


def _get(app: FastAPI, target: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(target)

    return asyncio.run(go())


def test_a_misspelt_derive_parameter_is_refused_and_the_one_meant_named(services: Services) -> None:
    reply = _get(create_app(services), "/api/v1/balance/derive/c1?startingbalance=5&period=2026-02")
    assert reply.status_code == 400
    body = reply.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert body["message"].startswith(
        "startingbalance: unknown query parameter; did you mean startingBalance? this route takes "
        "startingBalance, startingCheckpoint, startingCheckpointType, limit, offset, order, period,"
    )


def test_a_near_miss_is_suggested_and_a_stranger_only_listed(services: Services) -> None:
    app = create_app(services)
    near = _get(app, "/api/v1/balance/checkpoints?perod=2026-02").json()["message"]
    assert near.startswith("perod: unknown query parameter; did you mean period? ")
    stranger = _get(app, "/api/v1/balance/checkpoints?colour=blue").json()["message"]
    assert stranger == (
        "colour: unknown query parameter; this route takes customerId, period, timePreset, "
        "startDate, endDate, limit, offset"
    )


def test_another_apis_name_for_a_parameter_points_to_the_routes(services: Services) -> None:
    message = _get(create_app(services), "/api/v1/balance/customers/c1?limit=5").json()["message"]
    assert message.startswith("limit: unknown query parameter; did you mean deltaLimit? ")


def test_a_route_that_takes_no_parameters_says_so(services: Services) -> None:
    app = create_app(services)
    reply = _get(app, "/api/v1/balance/usage?verbose=1")
    assert (reply.status_code, reply.json()["message"]) == (
        400,
        "verbose: unknown query parameter: this route takes none",
    )
    assert _get(app, "/healthz?x").status_code == 400  # a bare name is a parameter too


def test_it_is_answered_before_the_key_is_checked_and_known_parameters_pass(services: Services) -> None:
    app = create_app(services)
    # No key: the unknown parameter answers first, as a parameter given twice does.
    assert _get(app, "/api/v1/balance/derive/c1?Period=2026-02").status_code == 400
    # Known parameters reach the route (here its 401: no key).
    assert _get(app, "/api/v1/balance/derive/c1?period=2026-02&limit=5").status_code == 401
    assert _get(app, "/healthz").status_code == 200


def test_a_name_that_cannot_be_shown_as_sent_is_quoted_and_cut(services: Services) -> None:
    app = create_app(services)
    long_name = "x" * 500
    message = _get(app, f"/healthz?{long_name}=1").json()["message"]
    assert message.startswith(f'"{"x" * 64}"…: unknown query parameter')
    tabbed = _get(app, "/healthz?a%09b=1").json()["message"]
    assert tabbed.startswith('"a\\tb": unknown query parameter')


def test_every_route_refuses_and_knows_the_parameters_it_declares() -> None:
    """The names are read from each route itself: a parameter added to a route is taken
    without another list to keep, and a new router cannot forget the check."""
    routes = [route for router in ROUTERS for route in router.routes]
    assert routes and all(isinstance(route, RefusingUnknownParameters) for route in routes)
    named = {route.name: route for route in routes if isinstance(route, RefusingUnknownParameters)}
    assert named["list_checkpoints"].query_parameters() == (
        "customerId",
        "period",
        "timePreset",
        "startDate",
        "endDate",
        "limit",
        "offset",
    )
    assert named["usage"].query_parameters() == ()
    # Derive's are parsed by the core, which reads the names it knows: a parameter the route
    # declares and the core does not read would be taken and ignored, so the two lists are one.
    assert set(named["derive"].query_parameters()) == set(DERIVE_PARAMS)


@pytest.mark.parametrize("path", ["/api/v1/writes", "/api/v1/balance/delta", "/api/v1/balance/delta/batch"])
def test_a_write_with_a_parameter_it_does_not_take_is_refused_and_stores_nothing(
    services: Services, path: str
) -> None:
    """The hot write routes are answered past FastAPI's routing (``api.fastpath``): one with a
    query string is not, so ``?dryRun=true`` is refused rather than stored."""
    app = create_app(services)
    key = services.keys.create("acme").key

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(
                f"{path}?dryRun=true",
                headers={"X-Api-Key": key},
                json={"items": [{"key": "k1", "accountId": "c1", "bits": 7}]},
            )

    reply = asyncio.run(go())
    assert (reply.status_code, reply.json()["message"]) == (
        400,
        "dryRun: unknown query parameter: this route takes none",
    )
    assert services.storage.log.queued(10) == []
