"""Query parameters shared by several routes: strict integers, and the month scope.

Integer query parameters are read as strictly as the derive route reads its own.

FastAPI parses an ``int`` query parameter leniently: ``1.0``, `` 5`` and ``1_000`` are taken
as 1, 5 and 1000. With ``INTEGER_TEXT`` beside its ``Query`` (``Annotated[int, Query(ge=1),
INTEGER_TEXT]``) one accepts only what ``core.scopes.parse_integer_text`` accepts
(an optional sign and decimal digits), so ``limit=1.0`` is the same 400 on every route.

Derive's parameters go the other way: the route declares them as text (for its OpenAPI document
and its refusal of others) and ``core.scopes.parse_derive_query`` parses them, as compare's body
is parsed, so a scope's errors read alike on both routes; a parameter added to derive goes into
``core.scopes.DERIVE_PARAMS`` and that parser.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Query
from pydantic import BeforeValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from trueup.api.schemas.common import PERIOD, documented_as
from trueup.core.strict_json import describe

__all__ = ["INTEGER_TEXT", "OptionalText", "Period", "TimePreset", "given", "integer_schema", "one_of"]

_INTEGER_TEXT = re.compile(r"[+-]?[0-9]{1,40}")  # longer than any bound: those name the bound
_LONG_INTEGER = re.compile(r"[+-]?[0-9]{41,}")
"""An integer past every bound, too long to convert or to repeat: told as out of range."""


def _integer_text(value: object) -> object:
    if isinstance(value, str) and not _INTEGER_TEXT.fullmatch(value):
        if _LONG_INTEGER.fullmatch(value):
            digits = len(value.lstrip("+-"))
            raise PydanticCustomError(
                "integer_range",
                "is out of range, got an integer of {digits} digits",
                {"digits": f"{digits:,}"},
            )
        raise PydanticCustomError(
            "integer_text", "must be an integer, got {shown}", {"shown": describe(value)}
        )
    return value


INTEGER_TEXT = BeforeValidator(_integer_text)
"""Refuses an ``int`` query parameter not written as an optional sign and decimal digits.
(Beside the ``Query``, not in an ``Annotated`` of its own: nested, its bounds would reach the
OpenAPI document as ``ge``/``le`` instead of ``minimum``/``maximum``.)"""


def integer_schema(minimum: int, maximum: int) -> WithJsonSchema:
    """An integer query parameter as OpenAPI shows it. The route reads its text and the core
    parses it, so that ``limit=1.0`` is a 400 naming ``limit``, as on every route."""
    return WithJsonSchema({"type": "integer", "minimum": minimum, "maximum": maximum})


def one_of(*values: str) -> WithJsonSchema:
    """A text query parameter that takes one of these values, as OpenAPI shows it (the core
    refuses any other with a 400 naming the parameter)."""
    return WithJsonSchema({"type": "string", "enum": list(values)})


OptionalText = Annotated[str | None, Query(max_length=200)]
"""A text query parameter the core parses (it names the parameter in any error)."""
Period = Annotated[str | None, Query(max_length=200), documented_as(PERIOD, "YYYY-MM, a UTC month")]
TimePreset = Annotated[str | None, Query(max_length=200), one_of("current_month", "custom")]
"""With ``startDate``/``endDate`` (``OptionalText``), a time scope as PacSpace's SDK sends one."""


def given(**values: str | None) -> dict[str, str]:
    """The text parameters a request gave, by name, for the core to parse and to name in its
    errors (those it left out are not there)."""
    return {name: value for name, value in values.items() if value is not None}
