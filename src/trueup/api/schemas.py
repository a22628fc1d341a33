"""Wire schemas for the OpenAPI document.

Requests are decoded strictly by hand (``trueup.core``) so that every error names its field
the same way; these pydantic models describe the same shapes for ``/openapi.json`` and for
clients. Responses are built as plain dicts and documented here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ErrorBody",
    "Health",
    "Ready",
    "TreeHeadModel",
    "WriteAccepted",
    "WriteItem",
    "WriteRequest",
    "WriteStatus",
]

ACCOUNT_ID = r"^[A-Za-z0-9_.:\-]{1,128}$"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorBody(BaseModel):
    success: Literal[False]
    statusCode: int
    error: str = Field(description="HTTP reason phrase")
    code: str = Field(description="stable UPPER_SNAKE error code")
    message: str = Field(description="what was wrong, naming the field")
    retryAfterSeconds: int | None = None
    requestId: str | None = None


class WriteItem(BaseModel):
    key: str = Field(min_length=1, max_length=256, description="idempotency key, unique per tenant")
    accountId: str = Field(pattern=ACCOUNT_ID)
    bits: int = Field(
        description="signed integer delta in minor units, non-zero", ge=-1_000_000_000, le=1_000_000_000
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


class Health(BaseModel):
    status: Literal["ok"]


class _ReadyData(BaseModel):
    database: Literal["ok", "unavailable"]
    sequencer: Literal["leader", "standby", "down", "off"]
    committer: Literal["thread", "process", "down"]
    dispatcher: Literal["leader", "standby", "off"]
    queueDepth: int | None
    oldestQueuedAgeSeconds: float | None
    host: str
    pid: int


class Ready(BaseModel):
    success: bool
    data: _ReadyData


class _LogKeyData(BaseModel):
    origin: str
    verifierKey: str
    algorithm: str
    format: str


class LogKey(BaseModel):
    success: Literal[True]
    data: _LogKeyData


class _InclusionData(BaseModel):
    anchorId: str
    leafIndex: int
    treeSize: int
    rootHash: str
    proof: list[str]
    checkpoint: str


class InclusionProof(BaseModel):
    success: Literal[True]
    data: _InclusionData


class _ConsistencyData(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    from_: int = Field(alias="from")
    to: int
    fromRoot: str
    toRoot: str
    proof: list[str]
    checkpoint: str


class ConsistencyProof(BaseModel):
    success: Literal[True]
    data: _ConsistencyData


class ProofBundle(BaseModel):
    success: Literal[True]
    data: dict[str, Any] = Field(
        description="version, anchorId, leafIndex, leaf, leafHash, "
        "treeSize, rootHash, inclusionProof, checkpoint"
    )


class VerifyResult(_Open):
    success: bool
    data: dict[str, Any] = Field(
        description="verified, proofRoot, recordedAt, and per type: "
        "treeSize and checkpoint, or the period summary"
    )


class _DeriveDelta(BaseModel):
    anchorId: str
    delta: int
    reason: str
    status: Literal["VERIFIED"]
    createdAt: str
    recordId: str
    leafIndex: int
    key: str


class _WindowSummary(BaseModel):
    period: str
    totalCredits: int
    totalDebits: int
    netChange: int
    deltasCount: int


class _NewestInclusion(BaseModel):
    anchorId: str
    leafIndex: int
    leafHash: str
    proof: list[str]


class _VerificationProof(BaseModel):
    rootHash: str
    algorithm: Literal["sha256"]
    timestamp: str
    treeSize: int
    checkpoint: str
    inclusionProof: _NewestInclusion | None


class _DeriveData(BaseModel):
    customerId: str
    computedBalance: int
    startingBalance: int
    deltasCount: int
    latestCheckpoint: str
    startingCheckpoint: dict[str, Any] | None
    deltas: list[_DeriveDelta]
    windowSummaries: list[_WindowSummary]
    verificationProof: _VerificationProof
    limit: int
    offset: int
    order: Literal["asc", "desc"]
    scope: dict[str, Any]


class DeriveResponse(BaseModel):
    success: Literal[True]
    data: _DeriveData


class CompareBody(BaseModel):
    customerId: str = Field(pattern=ACCOUNT_ID)
    yourBalance: int
    theirBalance: int
    startingBalance: int = 0
    startingCheckpoint: str | None = None
    startingCheckpointType: Literal["itemsRoot", "anchorId", "proofRoot", "recordId"] | None = None
    period: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}$")
    yourWindows: list[dict[str, Any]] | None = Field(default=None, description="[{period, netChange}]")
    theirWindows: list[dict[str, Any]] | None = Field(default=None, description="[{period, netChange}]")


class _CompareData(_Open):
    customerId: str
    neutralBalance: int
    matchesYours: bool
    matchesTheirs: bool
    discrepancyReport: dict[str, Any] | None = None


class CompareResponse(BaseModel):
    success: Literal[True]
    data: _CompareData


class CheckpointBody(BaseModel):
    customerId: str = Field(pattern=ACCOUNT_ID)
    period: str = Field(pattern=r"^\d{4}-\d{2}$")
    force: bool = False


class CheckpointModel(BaseModel):
    checkpointId: str
    proofRoot: str
    customerId: str
    period: str
    openingBalance: int
    closingBalance: int
    netChange: int
    totalCredits: int
    totalDebits: int
    deltasCount: int
    treeSize: int
    status: Literal["VERIFIED"]
    locked: bool
    createdAt: str


class CheckpointResponse(BaseModel):
    success: Literal[True]
    data: CheckpointModel


class _CheckpointList(BaseModel):
    checkpoints: list[CheckpointModel]
    total: int
    limit: int
    offset: int


class CheckpointListResponse(BaseModel):
    success: Literal[True]
    data: _CheckpointList


class _Receipt(BaseModel):
    checkpointId: str
    customerId: str
    period: str
    proofRoot: str
    deltaCount: int
    startingBalance: int
    finalBalance: int
    netChange: int
    treeSize: int
    verifyUrl: str
    verificationApiUrl: str


class ReceiptResponse(BaseModel):
    success: Literal[True]
    data: _Receipt


class CustomerModel(BaseModel):
    customerId: str
    balance: int
    deltaCount: int
    firstActivity: str | None
    lastActivity: str | None


class _CustomerList(BaseModel):
    customers: list[CustomerModel]
    total: int
    page: int
    limit: int


class CustomerListResponse(BaseModel):
    success: Literal[True]
    data: _CustomerList


class _CustomerDetail(CustomerModel):
    windowSummaries: list[_WindowSummary]


class CustomerResponse(BaseModel):
    success: Literal[True]
    data: _CustomerDetail


class _Usage(BaseModel):
    tenantId: str = Field(description="the tenant id its leaves carry (a proof bundle's leaf.tenant)")
    plan: str
    period: str
    allowance: int | None
    used: int
    remaining: int | None
    resetsAt: str
    unlimited: bool


class UsageResponse(BaseModel):
    success: Literal[True]
    data: _Usage


class EmitBody(BaseModel):
    customerId: str = Field(pattern=ACCOUNT_ID)
    delta: int = Field(ge=-1_000_000_000, le=1_000_000_000, description="non-zero integer")
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
    occurredAt: str
    createdAt: str
    verifiedAt: str | None
    anchorId: str | None
    leafIndex: int | None
    error: str | None
    inclusionProof: list[str] | None
    treeHead: dict[str, Any] | None


class DeltaStatusResponse(BaseModel):
    success: Literal[True]
    data: _DeltaStatusData


# -- webhooks (DESIGN.md §2.7) ------------------------------------------------------------

WebhookEventType = Literal[
    "verification.completed", "delta.verified", "delta.failed", "checkpoint.verified", "*"
]


class WebhookCreateBody(BaseModel):
    url: str = Field(
        max_length=2048,
        description="https URL resolving to public addresses only "
        "(unless the operator allows http or private addresses)",
    )
    description: str | None = Field(default=None, max_length=500)
    events: list[WebhookEventType] | None = Field(
        default=None, description='event types to receive; omitted or ["*"]: every type'
    )


class WebhookEndpointModel(BaseModel):
    id: str
    url: str
    description: str
    events: list[WebhookEventType]
    createdAt: str
    rotatedAt: str | None
    previousSecretExpiresAt: str | None = Field(
        description="until then deliveries are signed with the new and the previous secret"
    )


class _WebhookWithSecret(WebhookEndpointModel):
    secret: str = Field(description="whsec_…: shown only in this reply; sign checks use it")


class WebhookSecretResponse(BaseModel):
    success: Literal[True]
    data: _WebhookWithSecret


class _WebhookEndpointList(BaseModel):
    webhooks: list[WebhookEndpointModel]
    total: int


class WebhookEndpointListResponse(BaseModel):
    success: Literal[True]
    data: _WebhookEndpointList


class _WebhookDeleted(BaseModel):
    id: str
    url: str
    deleted: Literal[True]


class WebhookDeletedResponse(BaseModel):
    success: Literal[True]
    data: _WebhookDeleted


DeliveryStatus = Literal["pending", "delivered", "failed"]


class WebhookDeliveryModel(BaseModel):
    eventId: str
    event: str
    webhookId: str
    url: str
    status: DeliveryStatus
    deliveryStatus: DeliveryStatus = Field(description="status, which PacSpace's SDK leaves untouched")
    attempts: int
    lastStatusCode: int | None
    lastError: str | None
    lastAttemptAt: str | None
    nextAttemptAt: str | None
    deliveredAt: str | None
    createdAt: str


class _WebhookDeliveries(BaseModel):
    deliveries: list[WebhookDeliveryModel]
    total: int
    limit: int
    offset: int


class WebhookDeliveriesResponse(BaseModel):
    success: Literal[True]
    data: _WebhookDeliveries


class _WebhookAttempt(BaseModel):
    webhookId: str
    attempt: int
    startedAt: str
    durationMs: int
    statusCode: int | None
    error: str | None


class _WebhookEvent(BaseModel):
    eventId: str
    event: str
    payload: dict[str, Any] = Field(description="the envelope {id, event, timestamp, data} as sent")
    deliveries: list[WebhookDeliveryModel]
    attempts: list[_WebhookAttempt]


class WebhookEventResponse(BaseModel):
    success: Literal[True]
    data: _WebhookEvent


class _WebhookRetry(BaseModel):
    eventId: str
    status: Literal["pending"]
    deliveryStatus: Literal["pending"]
    queued: int = Field(description="deliveries queued again")


class WebhookRetryResponse(BaseModel):
    success: Literal[True]
    data: _WebhookRetry
