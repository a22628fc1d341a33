"""Refusing the query parameters a route does not take.

FastAPI drops a query parameter its route does not declare. A misspelt one
(``startingbalance``, ``Period``) would then change nothing, and the reply would answer another
question than the one asked, with a 200: a balance over the whole history instead of one month,
every period lock instead of this month's. So every route refuses them: 400
``VALIDATION_ERROR`` naming the parameter, the one probably meant, and the ones the route takes
(:func:`trueup.core.unknown_names.refuse_unknown`).

Every router is made with :class:`RefusingUnknownParameters` as its route class, whose handler
checks the query before the route's dependencies run, so like a parameter given twice
(:mod:`trueup.api.guards`) it is answered before the key is checked: it says nothing about the
tenant's data.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from trueup.core.unknown_names import refuse_unknown

__all__ = ["RefusingUnknownParameters"]

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class RefusingUnknownParameters(APIRoute):
    """A route that answers 400 ``VALIDATION_ERROR`` to a query parameter it does not declare
    (the first one, by name: the one probably meant, and the ones it takes)."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        taken = self.query_parameters()

        async def checked(request: Request) -> Response:
            if request.scope.get("query_string"):
                refuse_unknown(request.query_params, taken, "query parameter")
            return await handler(request)

        return checked

    def query_parameters(self) -> tuple[str, ...]:
        """The wire names of the query parameters the route and its dependencies declare."""
        return _declared(self.dependant)


def _declared(dependant: Dependant) -> tuple[str, ...]:
    names: dict[str, None] = {}  # in declaration order, each once
    pending: list[Dependant] = [dependant]
    while pending:
        dependant = pending.pop(0)
        names.update((param.alias, None) for param in dependant.query_params)
        pending.extend(dependant.dependencies)
    return tuple(names)
