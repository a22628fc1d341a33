"""Small shaping helpers shared by the route modules."""

from __future__ import annotations

from typing import Any

from trueup.api.responses import JSONResponse, RawJSONResponse
from trueup.core.ids import anchor_id, record_id
from trueup.core.timestamps import format_wire, format_wire_ms
from trueup.service.ingest import Reply
from trueup.storage.balance_records import DeltaRecord
from trueup.storage.heads import HeadRecord

__all__ = ["delta_json", "hex_root", "reply_response", "tree_head_json"]


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


def delta_json(delta: DeltaRecord) -> dict[str, Any]:
    """A verified delta as derive (seed) lists it, with ours after the seed's fields."""
    return {
        "anchorId": anchor_id(delta.leaf_index),
        "delta": delta.amount,
        "reason": delta.reason,
        "status": "VERIFIED",
        "createdAt": format_wire(delta.occurred_at),
        "recordId": record_id(delta.request_id, delta.item_index),
        "leafIndex": delta.leaf_index,
        "key": delta.key,
    }
