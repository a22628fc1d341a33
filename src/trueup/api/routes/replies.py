"""Small shaping helpers shared by the route modules."""

from __future__ import annotations

from typing import Any

from trueup.api.responses import JSONResponse, RawJSONResponse
from trueup.core.timestamps import format_wire_ms
from trueup.service.ingest import Reply
from trueup.storage.heads import HeadRecord

__all__ = ["hex_root", "reply_response", "tree_head_json"]


def reply_response(reply: Reply) -> JSONResponse | RawJSONResponse:
    headers = {"Retry-After": str(reply.retry_after)} if reply.retry_after is not None else None
    if reply.raw is not None:
        return RawJSONResponse(reply.raw, reply.status_code, headers)
    return JSONResponse(reply.payload, status_code=reply.status_code, headers=headers)


def hex_root(root: bytes) -> str:
    """``0x`` + lower-case hex, the form of ``itemsRoot`` and ``rootHash``."""
    return "0x" + root.hex()


def tree_head_json(head: HeadRecord) -> dict[str, Any]:
    return {
        "treeSize": head.size,
        "rootHash": hex_root(head.root),
        "timestamp": format_wire_ms(head.timestamp_ms),
    }
