"""Refusing the query parameters a route does not take.

FastAPI drops a query parameter its route does not declare. A misspelt one
(``startingbalance``, ``Period``) would then change nothing, and the reply would answer another
question than the one asked, with a 200: a balance over the whole history instead of one month,
every period lock instead of this month's. So every route refuses them: 400
``VALIDATION_ERROR`` naming the parameter, the one probably meant, and the ones the route takes.

Every router is made with :class:`RefusingUnknownParameters` as its route class, whose handler
checks the query before the route's dependencies run, so like a parameter given twice
(:mod:`trueup.api.guards`) it is answered before the key is checked: it says nothing about the
tenant's data.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from trueup.core.errors import ValidationError

__all__ = ["RefusingUnknownParameters"]

_SHOWN_NAME = 64
"""The longest parameter name an error repeats (a name is the client's text, of any length)."""

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class RefusingUnknownParameters(APIRoute):
    """A route that answers 400 ``VALIDATION_ERROR`` to a query parameter it does not declare
    (the first one, by name: the one probably meant, and the ones it takes)."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        taken = self.query_parameters()

        async def checked(request: Request) -> Response:
            if request.scope.get("query_string"):
                for name in request.query_params:
                    if name not in taken:
                        raise ValidationError(_shown(name), _problem(name, taken))
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


def _problem(name: str, taken: tuple[str, ...]) -> str:
    if not taken:
        return "unknown query parameter: this route takes none"
    meant = [known for known in taken if known.lower() == name.lower()]
    meant = meant or difflib.get_close_matches(name, taken, n=1, cutoff=0.75)
    hint = f"did you mean {meant[0]}? " if meant else ""
    return f"unknown query parameter; {hint}this route takes {', '.join(taken)}"


def _shown(name: str) -> str:
    """The parameter's name as an error shows it: as sent when it is short and printable."""
    if len(name) <= _SHOWN_NAME and name.isprintable() and name.strip() == name and name:
        return name
    return repr(name[:_SHOWN_NAME]) + ("…" if len(name) > _SHOWN_NAME else "")
