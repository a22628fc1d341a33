"""``/healthz`` (alive) and ``/readyz`` (database reachable, sequencer and committer state, whether
some process holds each single-writer role, queue)."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from trueup.api.deps import ServicesDep
from trueup.api.responses import JSONResponse
from trueup.api.schemas.common import Health, Ready
from trueup.api.unknown_params import RefusingUnknownParameters
from trueup.core.timestamps import parse_canonical
from trueup.service.metrics import PROBE_WAIT_S
from trueup.storage.errors import StorageError

router = APIRouter(tags=["health"], route_class=RefusingUnknownParameters)

_HOST = socket.gethostname()


def _answered_by() -> dict[str, object]:
    """Which process answered: with ``serve --workers N`` each request reaches one of the
    workers, and the roles in the reply are that worker's."""
    return {"host": _HOST, "pid": os.getpid()}


@router.get("/healthz", summary="The process is alive", responses={200: {"model": Health}})
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    summary="The database answers; the sequencer's role and the queue's depth and age",
    responses={200: {"model": Ready}, 503: {"model": Ready}},
)
async def readyz(request: Request, services: ServicesDep) -> JSONResponse:
    role = getattr(request.app.state, "sequencer_role", lambda: "off")()
    committer = getattr(request.app.state, "committer_state", lambda: "thread")()
    dispatcher = getattr(request.app.state, "dispatcher_role", lambda: "off")()
    failing = services.committer.failing
    writes = "ok" if failing is None else f"failing: {failing}"
    try:
        probe = await run_in_threadpool(services.storage.probe, PROBE_WAIT_S)
    except StorageError:
        return JSONResponse(
            {
                "success": False,
                "data": {
                    "database": "unavailable",
                    "sequencer": role,
                    "sequencerElected": None,
                    "committer": committer,
                    "dispatcher": dispatcher,
                    "dispatcherElected": None,
                    "writes": writes,
                    "queueDepth": None,
                    "oldestQueuedAgeSeconds": None,
                    **_answered_by(),
                },
            },
            status_code=503,
        )
    age = None
    if probe.oldest_queued_at is not None:
        age = round((datetime.now(UTC) - parse_canonical(probe.oldest_queued_at)).total_seconds(), 3)
    return JSONResponse(
        {
            "success": True,
            "data": {
                "database": "ok",
                "sequencer": role,
                "sequencerElected": probe.roles_held["sequencer"],
                "committer": committer,
                "dispatcher": dispatcher,
                "dispatcherElected": probe.roles_held["dispatcher"],
                "writes": writes,
                "queueDepth": probe.queue_depth,
                "oldestQueuedAgeSeconds": age,
                **_answered_by(),
            },
        }
    )
