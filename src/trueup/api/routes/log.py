"""The log (ours): signed checkpoints, RFC 9162 proofs, proof bundles, public verification."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse

from trueup.api.deps import Auth, ServicesDep
from trueup.api.openapi import errors
from trueup.api.params import INTEGER_TEXT, one_of
from trueup.api.responses import JSONResponse
from trueup.api.routes.replies import hex_root
from trueup.api.schemas.common import ANCHOR_ID, ROOT, documented_as
from trueup.api.schemas.log import ConsistencyProof, InclusionProof, LogKey, ProofBundle, VerifyResult
from trueup.api.unknown_params import RefusingUnknownParameters
from trueup.core.errors import ValidationError
from trueup.core.ids import anchor_id
from trueup.core.strict_json import describe
from trueup.core.timestamps import format_wire, format_wire_ms
from trueup.proof import leaf_fields_to_json
from trueup.service.log import parse_root
from trueup.storage.checkpoints import CheckpointRecord

router = APIRouter(tags=["log"], route_class=RefusingUnknownParameters)


@router.get(
    "/api/v1/log/checkpoint",
    summary="The newest signed tree head, as a C2SP signed note (public)",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "signed note"}, **errors(404)},
)
async def checkpoint(services: ServicesDep) -> PlainTextResponse:
    head = await run_in_threadpool(services.log.latest)
    return PlainTextResponse(head.checkpoint, media_type="text/plain; charset=utf-8")


@router.get(
    "/api/v1/log/key",
    summary="The verifier key that signs this log's checkpoints (public; pin it)",
    responses={200: {"model": LogKey}},
)
async def log_key(services: ServicesDep) -> JSONResponse:
    return JSONResponse(
        {
            "success": True,
            "data": {
                "origin": services.settings.log_origin,
                "verifierKey": services.log.verifier_key,
                "algorithm": "ed25519",
                "format": "C2SP signed-note verifier key",
            },
        }
    )


@router.get(
    "/api/v1/log/proof/inclusion",
    summary="RFC 9162 inclusion proof of one of your deltas",
    responses={200: {"model": InclusionProof}, **errors(400, 401, 404)},
)
async def inclusion(
    services: ServicesDep,
    principal: Auth,
    # a_ and up to 40 digits, as every route taking an anchor reads one
    anchorId: Annotated[  # noqa: N803
        str, Query(max_length=42), documented_as(ANCHOR_ID, "a_<leaf index>", max_length=42)
    ],
    treeSize: Annotated[int | None, Query(ge=1, le=2**62), INTEGER_TEXT] = None,  # noqa: N803
) -> JSONResponse:
    answer = await run_in_threadpool(services.log.inclusion, principal, anchorId, treeSize)
    return JSONResponse(
        {
            "success": True,
            "data": {
                "anchorId": anchor_id(answer.leaf_index),
                "leafIndex": answer.leaf_index,
                "treeSize": answer.head.size,
                "rootHash": hex_root(answer.head.root),
                "proof": [node.hex() for node in answer.proof],
                "checkpoint": answer.head.checkpoint,
            },
        }
    )


@router.get(
    "/api/v1/log/proof/consistency",
    summary="RFC 9162 consistency proof between two signed tree heads (public)",
    responses={200: {"model": ConsistencyProof}, **errors(400, 404)},
)
async def consistency(
    services: ServicesDep,
    from_: Annotated[
        int,
        Query(alias="from", ge=0, le=2**62, description="a signed tree head's size, at most `to`"),
        INTEGER_TEXT,
    ],
    to: Annotated[
        int | None,
        Query(ge=0, le=2**62, description="a signed tree head's size; the newest by default"),
        INTEGER_TEXT,
    ] = None,
) -> JSONResponse:
    old, new, proof = await run_in_threadpool(services.log.consistency, from_, to)
    return JSONResponse(
        {
            "success": True,
            "data": {
                "from": old.size,
                "to": new.size,
                "fromRoot": hex_root(old.root),
                "toRoot": hex_root(new.root),
                "proof": [node.hex() for node in proof],
                "checkpoint": new.checkpoint,
            },
        }
    )


@router.get(
    "/api/v1/log/proof/bundle/{anchorId}",
    summary="An offline proof bundle of one of your deltas, for `trueup verify`",
    responses={200: {"model": ProofBundle}, **errors(400, 401, 404)},
)
async def bundle(
    anchorId: Annotated[str, Path(), documented_as(ANCHOR_ID, "a_<leaf index>")],  # noqa: N803
    services: ServicesDep,
    principal: Auth,
    treeSize: Annotated[  # noqa: N803
        int | None,
        Query(
            ge=1,
            le=2**62,
            description="the size of a signed tree head (one you hold, say) to prove the delta in; "
            "the newest by default",
        ),
        INTEGER_TEXT,
    ] = None,
) -> JSONResponse:
    document = await run_in_threadpool(services.log.bundle, principal, anchorId, treeSize)
    return JSONResponse({"success": True, "data": document})


@router.get(
    "/api/v1/verify/{root}",
    summary="Is this root one of ours? Public; reveals no business data for tree heads",
    responses={200: {"model": VerifyResult}, 404: {"model": VerifyResult}, **errors(400)},
)
async def verify(
    root: Annotated[
        str, Path(), documented_as(ROOT, "a tree head's root or a period checkpoint's proof root")
    ],
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000), INTEGER_TEXT] = 1000,
    offset: Annotated[int, Query(ge=0, le=10**9), INTEGER_TEXT] = 0,
    # PacSpace's SDK sends source=chain or both (its default, db, it leaves out). This log is
    # anchored on no chain: a reply verified against the database alone would answer a question
    # that was not asked, so only db is taken.
    source: Annotated[str | None, Query(max_length=200), one_of("db")] = None,
) -> JSONResponse:
    if source not in (None, "db"):
        raise ValidationError(
            "source",
            f"must be db (the default), got {describe(source)}: this log is anchored on no chain; "
            "its signed tree heads and proofs are checked offline (docs/verification.md)",
        )
    raw = parse_root(root)
    head = await run_in_threadpool(services.log.head_by_root, raw)
    if head is None:
        record = await run_in_threadpool(services.balances.checkpoint_by_root, raw)
        if record is None:
            return JSONResponse(_unverified(root), status_code=404)
        return JSONResponse({"success": True, "data": await _period_data(services, record, limit, offset)})
    data: dict[str, Any] = {
        "verified": True,
        "proofRoot": hex_root(head.root),
        "recordedAt": format_wire_ms(head.timestamp_ms),
        "type": "treeHead",
        "treeSize": head.size,
        "checkpoint": head.checkpoint,
        "verifierKey": services.log.verifier_key,
    }
    return JSONResponse({"success": True, "data": data})


async def _period_data(
    services: ServicesDep, record: CheckpointRecord, limit: int, offset: int
) -> dict[str, Any]:
    """A period checkpoint seen through its proof root (a capability, DESIGN.md §2.6)."""
    view = await run_in_threadpool(services.balances.period_view, record, limit, offset)
    leaves = [entry.delta.leaf_index for entry in view.records]
    proofs = await run_in_threadpool(services.log.inclusion_paths, leaves, record.tree_size)
    return {
        "verified": True,
        "proofRoot": hex_root(record.proof_root),
        "recordedAt": format_wire(record.created_at),
        "type": "periodCheckpoint",
        "checkpointId": record.id,
        "customerId": record.customer_id,
        "period": record.period,
        "summary": {
            "recordCount": record.deltas_count,
            "netChange": record.net,
            "startingBalance": record.opening_balance,
            "endingBalance": record.closing_balance,
            "firstRecordAt": view.first_at and format_wire(view.first_at),
            "lastRecordAt": view.last_at and format_wire(view.last_at),
        },
        "records": [
            {
                "amount": entry.delta.amount,
                "reason": entry.delta.reason,
                "referenceId": entry.delta.key,
                "status": "VERIFIED",
                "time": format_wire(entry.delta.occurred_at),
                "anchorId": anchor_id(entry.delta.leaf_index),
                "leafHash": entry.leaf_hash.hex(),
                "leaf": leaf_fields_to_json(entry.leaf),
                # RFC 9162 §2.1.3: this leaf in the signed tree head below (treeSize, checkpoint)
                "inclusionProof": [node.hex() for node in proof],
            }
            for entry, proof in zip(view.records, proofs, strict=True)
        ],
        "recordsTotal": record.deltas_count,
        "limit": limit,
        "offset": offset,
        "recompute": {
            "formula": (
                "proofRoot = SHA-256(0x03 || nonce || root), root = the RFC 9162 §2.1.1 tree root "
                "whose leaf nodes are leafHashes in order (each is already SHA-256(0x00 || leaf): "
                "not hashed again)"
            ),
            "nonce": record.nonce.hex(),
            "leafHashes": [entry.leaf_hash.hex() for entry in view.records],
            "leafHashesTotal": record.deltas_count,
            "note": "leafHashes holds this page's; recompute from every page's, in order",
        },
        "treeSize": record.tree_size,
        "treeRoot": hex_root(view.head.root),
        "checkpoint": view.head.checkpoint,
        "verifierKey": services.log.verifier_key,
    }


def _unverified(root: str) -> dict[str, Any]:
    return {
        "success": False,
        "statusCode": 404,
        "error": "Not Found",
        "code": "ROOT_NOT_FOUND",
        "message": "this root is not a tree head or checkpoint of this log",
        "data": {"verified": False, "proofRoot": root},
    }
