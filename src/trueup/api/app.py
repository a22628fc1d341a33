"""The FastAPI application: routes, the error table, OpenAPI, and lifecycle hooks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from trueup import __version__
from trueup.api.errors import install_error_handlers
from trueup.api.fastpath import WriteAnswers, WriteFastPath
from trueup.api.guards import RefuseAmbiguousInput
from trueup.api.metrics import ResponseCounter
from trueup.api.metrics import router as metrics_router
from trueup.api.openapi import install_openapi
from trueup.api.responses import JSONResponse
from trueup.api.routes import balance, checkpoints, customers, emit, health, log, webhooks, writes
from trueup.api.stopping import AnswerCutOffRequests
from trueup.service.container import Services

__all__ = ["ROUTERS", "create_app"]

DESCRIPTION = """Trueup is a neutral, verifiable balance ledger. Vendors write signed integer
deltas; every accepted delta is sealed into an append-only RFC 9162 Merkle log with signed
checkpoints; balances are derived from sealed deltas only. Authenticate with `X-Api-Key`."""

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    metrics_router,
    writes.router,
    emit.router,
    log.router,
    balance.router,
    checkpoints.router,
    customers.router,
    webhooks.router,
)
"""Every route of the API, in the order the app includes them."""


def create_app(
    services: Services,
    on_startup: Callable[[], None] | None = None,
    on_shutdown: Callable[[], None] | None = None,
    sequencer_role: Callable[[], str] | None = None,
    committer_state: Callable[[], str] | None = None,
    dispatcher_role: Callable[[], str] | None = None,
) -> FastAPI:
    """The ASGI app over ``services``. Background workers are started by ``on_startup``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if on_startup is not None:
            on_startup()
        try:
            yield
        finally:
            if on_shutdown is not None:
                on_shutdown()

    app = FastAPI(
        title="Trueup",
        version=__version__,
        description=DESCRIPTION,
        default_response_class=JSONResponse,
        lifespan=lifespan,
        # "/api/v1/writes/" is a 404 that names the path without the slash, not a 307 to it: a
        # client following that redirect would send its key and body to whatever origin the
        # Location names (behind a proxy, perhaps plain http).
        redirect_slashes=False,
        # FastAPI's native OpenTelemetry support asks the global providers, and through them the
        # environment, on every request whether anybody configured it (4.5 µs a request on the
        # benchmark machine). Trueup reports through /metrics (Prometheus) and its logs: off.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = services
    app.state.sequencer_role = sequencer_role or (lambda: "off")
    app.state.committer_state = committer_state or (lambda: "thread")
    app.state.dispatcher_role = dispatcher_role or (lambda: "off")
    install_error_handlers(app)
    for router in ROUTERS:
        _answer_head_as_get(router)
        app.include_router(router)
    app.add_middleware(ResponseCounter)
    # Added late, so it runs early: the hot write routes skip routing and dependencies.
    answers = WriteAnswers(services)
    app.state.write_answers = answers  # the HTTP protocol answers whole requests itself
    app.add_middleware(WriteFastPath, answers=answers)
    app.add_middleware(RefuseAmbiguousInput)  # first of all: no route, fast or not, sees a NUL
    app.add_middleware(AnswerCutOffRequests)  # outermost: a stop's cut-off is a 503, not a 500
    install_openapi(app)
    return app


def _answer_head_as_get(router: APIRouter) -> None:
    """Every ``GET`` route of ``router`` answers ``HEAD`` too (RFC 9110 §9.3.2: the same status
    and headers, no body; the server leaves the body out), which FastAPI does not do by itself:
    load balancers and uptime checks often probe with HEAD. Left out of the OpenAPI document,
    which would list each as a second operation of its path. Adds each once, however many apps
    are made from the router."""
    routes = [route for route in router.routes if isinstance(route, APIRoute)]
    taken = {route.path for route in routes if "HEAD" in (route.methods or ())}
    for route in routes:
        if "GET" in (route.methods or ()) and route.path not in taken:
            router.add_api_route(
                route.path,
                route.endpoint,
                methods=["HEAD"],
                include_in_schema=False,
                response_class=route.response_class,
                status_code=route.status_code,
                name=f"{route.name}_head",
            )
