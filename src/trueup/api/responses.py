"""JSON responses: orjson on the hot path, exact integers beyond 64 bits by fallback."""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.responses import Response

__all__ = ["JSONResponse", "RawJSONResponse", "dumps"]


def dumps(value: Any) -> bytes:
    """Serialise ``value``; integers of any size stay exact (JSON has no integer limit)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        # orjson refuses integers outside 64 bits; the standard encoder writes them exactly.
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class JSONResponse(StarletteJSONResponse):
    """JSON rendered by orjson (a JSON response class, so OpenAPI documents it as JSON)."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


class RawJSONResponse(Response):
    """A reply whose JSON text was stored earlier (idempotent replays)."""

    media_type = "application/json"

    def __init__(self, text: str, status_code: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(content=text.encode("utf-8"), status_code=status_code, headers=headers)
