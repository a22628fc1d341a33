"""JSON responses: orjson on the hot path, exact integers beyond 64 bits by fallback."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.responses import Response

from trueup.core.json_text import dumps

__all__ = ["JSONResponse", "RawJSONResponse", "dumps"]


class JSONResponse(StarletteJSONResponse):
    """JSON rendered by orjson (a JSON response class, so OpenAPI documents it as JSON)."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


class RawJSONResponse(Response):
    """A reply whose JSON text was stored earlier (idempotent replays)."""

    media_type = "application/json"

    def __init__(self, text: str, status_code: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(content=text.encode("utf-8"), status_code=status_code, headers=headers)
