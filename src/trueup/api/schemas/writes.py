"""Wire schemas of the write routes: ``/api/v1/writes`` (items, acceptance, status) and
PacSpace's emit routes (``/api/v1/balance/delta``, its batch and its status).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from trueup.api.schemas.common import ACCOUNT_ID

__all__ = [
    "DeltaStatusResponse",
    "EmitBatchBody",
    "EmitBatchResponse",
    "EmitBody",
    "EmitResponse",
    "IdempotencyPending",
    "TreeHeadModel",
    "WriteAccepted",
    "WriteItem",
    "WriteRequest",
    "WriteStatus",
]

_NON_ZERO: dict[str, Any] = {"not": {"const": 0}}


class WriteItem(BaseModel):
    key: str = Field(min_length=1, max_length=256, description="idempotency key, unique per tenant")
    accountId: str = Field(pattern=ACCOUNT_ID)
    bits: int = Field(
        description="signed integer delta in minor units, non-zero",
        ge=-1_000_000_000,
        le=1_000_000_000,
        json_schema_extra=_NON_ZERO,
    )
    metadata: dict[str, Any] | None = Field(default=None, description="≤ 4 KiB, depth ≤ 8")
    occurredAt: str | None = Field(default=None, description="RFC 3339; decides the period")
    reason: str | None = Field(default=None, max_length=500)


class WriteRequest(BaseModel):
    items: list[WriteItem] = Field(min_length=1, max_length=1000)


class _AcceptedData(BaseModel):
    requestId: str
    itemCount: int
    status: Literal["queued"]
    message: str


class WriteAccepted(BaseModel):
    statusCode: Literal[202]
    success: bool = True
    data: _AcceptedData


class IdempotencyPending(BaseModel):
    success: bool
    statusCode: Literal[202]
    code: Literal["IDEMPOTENCY_PENDING"]
    message: str
    retryAfterSeconds: int


class TreeHeadModel(BaseModel):
    treeSize: int
    rootHash: str
    timestamp: str


class _StatusItem(BaseModel):
    index: int
    key: str
    accountId: str
    bits: int
    recordId: str
    status: Literal["queued", "verified", "failed", "duplicate"]
    anchorId: str | None = None
    leafIndex: int | None = None
    treeSize: int | None = None
    error: str | None = None


class _StatusData(BaseModel):
    requestId: str
    status: Literal["queued", "verified", "partially_failed", "failed"]
    itemCount: int
    acceptedAt: str
    verifiedAt: str | None
    items: list[_StatusItem]
    limit: int
    offset: int
    treeHead: TreeHeadModel | None


class WriteStatus(BaseModel):
    success: Literal[True]
    data: _StatusData


class EmitBody(BaseModel):
    customerId: str = Field(pattern=ACCOUNT_ID)
    delta: int = Field(
        ge=-1_000_000_000, le=1_000_000_000, description="non-zero integer", json_schema_extra=_NON_ZERO
    )
    reason: str = Field(max_length=500)
    referenceId: str | None = Field(default=None, min_length=1, max_length=256)
    metadata: dict[str, Any] | None = None
    occurredAt: str | None = None


class EmitBatchBody(BaseModel):
    deltas: list[EmitBody] = Field(min_length=1, max_length=1000)


class _Emitted(BaseModel):
    recordId: str
    status: Literal["QUEUED", "VERIFIED", "FAILED"]
    customerId: str
    delta: int
    reason: str
    referenceId: str
    createdAt: str
    idempotent: bool | None = None


class EmitResponse(BaseModel):
    success: Literal[True]
    data: _Emitted


class _BatchResult(BaseModel):
    index: int
    customerId: Any
    delta: Any
    status: Literal["QUEUED", "VERIFIED", "FAILED"]
    recordId: str | None = None
    error: str | None = None
    code: str | None = None
    idempotent: bool | None = None


class _BatchData(BaseModel):
    totalQueued: int
    totalFailed: int
    results: list[_BatchResult]


class EmitBatchResponse(BaseModel):
    success: Literal[True]
    data: _BatchData


class _DeltaStatusData(BaseModel):
    recordId: str
    status: Literal["QUEUED", "VERIFIED", "FAILED"]
    customerId: str
    delta: int
    reason: str
    referenceId: str
    metadata: dict[str, Any] | None = Field(
        description="the delta's metadata as stored (null when it had none): the SHA-256 of its RFC 8785 "
        "canonical JSON, or of {} when null, is the leaf's metadataDigest"
    )
    occurredAt: str
    createdAt: str
    verifiedAt: str | None
    anchorId: str | None
    leafIndex: int | None
    error: str | None
    leaf: dict[str, Any] | None = Field(description="the leaf once verified, as a proof bundle holds it")
    leafHash: str | None = Field(description="SHA-256(0x00 || leaf), hex, once verified")
    inclusionProof: list[str] | None
    treeHead: dict[str, Any] | None


class DeltaStatusResponse(BaseModel):
    success: Literal[True]
    data: _DeltaStatusData
