"""Integer query parameters, read as strictly as the derive route reads its own.

FastAPI parses an ``int`` query parameter leniently: ``1.0``, `` 5`` and ``1_000`` are taken
as 1, 5 and 1000. With ``INTEGER_TEXT`` beside its ``Query`` (``Annotated[int, Query(ge=1),
INTEGER_TEXT]``) one accepts only what ``core.scopes.parse_integer_text`` accepts
(an optional sign and decimal digits), so ``limit=1.0`` is the same 400 on every route.
"""

from __future__ import annotations

import re

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from trueup.core.strict_json import describe

__all__ = ["INTEGER_TEXT"]

_INTEGER_TEXT = re.compile(r"[+-]?[0-9]{1,40}")  # longer than any bound: those name the bound


def _integer_text(value: object) -> object:
    if isinstance(value, str) and not _INTEGER_TEXT.fullmatch(value):
        raise PydanticCustomError(
            "integer_text", "must be an integer, got {shown}", {"shown": describe(value)}
        )
    return value


INTEGER_TEXT = BeforeValidator(_integer_text)
"""Refuses an ``int`` query parameter not written as an optional sign and decimal digits.
(Beside the ``Query``, not in an ``Annotated`` of its own: nested, its bounds would reach the
OpenAPI document as ``ge``/``le`` instead of ``minimum``/``maximum``.)"""
