"""Request-scoped dependencies: the services and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from trueup.service.container import Services
from trueup.service.keys import Principal

__all__ = ["Auth", "ServicesDep", "authenticate_key", "get_services"]


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def authenticate_key(services: Services, presented: str | None) -> Principal:
    """401 ``INVALID_API_KEY`` unless the key is well-formed, known and not revoked; then 429
    ``RATE_LIMITED`` when the key's bucket is empty."""
    principal = services.keys.cached(presented)
    if principal is not None and not services.limiter.shared:
        # The hot path: a recently verified key and an in-memory bucket, no thread hop.
        services.limiter.check(principal.key_id)
        return principal

    def check() -> Principal:
        verified = principal or services.keys.authenticate(presented)
        services.limiter.check(verified.key_id)
        return verified

    return await run_in_threadpool(check)


async def authenticate(
    services: ServicesDep,
    x_api_key: Annotated[str | None, Header(description="pk_live_<id>.<secret>")] = None,
) -> Principal:
    """The ``Auth`` dependency: see :func:`authenticate_key`."""
    return await authenticate_key(services, x_api_key)


Auth = Annotated[Principal, Depends(authenticate)]
