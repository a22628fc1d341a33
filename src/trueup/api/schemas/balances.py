"""Wire schemas of the balance routes: derive and compare, period checkpoints and their
receipts, customers and usage.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from trueup.api.schemas.common import ACCOUNT_ID, PERIOD, OpenModel
from trueup.core.scopes import MAX_BALANCE

__all__ = [
    "CheckpointBody",
    "CheckpointListResponse",
    "CheckpointModel",
    "CheckpointResponse",
    "CompareBody",
    "CompareResponse",
    "CustomerListResponse",
    "CustomerModel",
    "CustomerResponse",
    "DeriveResponse",
    "ReceiptResponse",
    "UsageResponse",
]


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


class StatedMonthlyNet(BaseModel):
    """One month's net as a party states it (``yourWindows``/``theirWindows``); any other
    field is refused (``core.scopes.WINDOW_FIELDS``)."""

    model_config = ConfigDict(extra="forbid")

    period: str = Field(pattern=PERIOD)
    netChange: int = Field(ge=-MAX_BALANCE, le=MAX_BALANCE)


class CompareBody(BaseModel):
    """The compare body as documented; the core parses it (a time scope as in derive), and
    refuses any other field (``core.scopes.COMPARE_FIELDS``)."""

    model_config = ConfigDict(extra="forbid")

    customerId: str = Field(pattern=ACCOUNT_ID)
    yourBalance: int = Field(ge=-MAX_BALANCE, le=MAX_BALANCE)
    theirBalance: int = Field(ge=-MAX_BALANCE, le=MAX_BALANCE)
    startingBalance: int = Field(ge=-MAX_BALANCE, le=MAX_BALANCE)
    startingCheckpoint: str | None = Field(default=None, max_length=200)
    startingCheckpointType: Literal["itemsRoot", "anchorId", "proofRoot", "recordId"] | None = None
    period: str | None = Field(default=None, pattern=PERIOD)
    timePreset: Literal["current_month", "custom"] | None = None
    startDate: str | None = Field(default=None, description="a date or RFC 3339 date-time, with endDate")
    endDate: str | None = Field(default=None, description="a date or RFC 3339 date-time, exclusive")
    asOf: str | None = Field(default=None, description="RFC 3339: deltas that occurred at or before it")
    yourWindows: list[StatedMonthlyNet] | None = Field(default=None, max_length=600)
    theirWindows: list[StatedMonthlyNet] | None = Field(default=None, max_length=600)


class _CompareData(OpenModel):
    customerId: str
    neutralBalance: int
    matchesYours: bool
    matchesTheirs: bool
    discrepancyReport: dict[str, Any] | None = None


class CompareResponse(BaseModel):
    success: Literal[True]
    data: _CompareData


class CheckpointBody(BaseModel):
    """A period lock's body: the month as ``period``, or as PacSpace's SDK names one
    (``timePreset``, ``startDate``/``endDate`` spanning exactly one month). Any other field is
    refused (``service.balances.LOCK_FIELDS``)."""

    model_config = ConfigDict(extra="forbid")

    customerId: str = Field(pattern=ACCOUNT_ID)
    period: str | None = Field(default=None, pattern=PERIOD, description="YYYY-MM; or the three below")
    timePreset: Literal["current_month", "custom"] | None = None
    startDate: str | None = Field(
        default=None, description="the first instant of the month: a date or RFC 3339"
    )
    endDate: str | None = Field(default=None, description="the first instant of the next month")
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
    period: str | None = Field(description="the month asked for (`period`), or null for all months")
    windowSummaries: list[_WindowSummary] = Field(description="each month's totals (of `period` if given)")
    deltas: list[_DeriveDelta] = Field(
        description="a page of the verified deltas in scope, most recently sealed first"
    )
    deltasInScope: int
    deltaPage: int = Field(description="the page shown, from 1 (`deltaPage`, default 1)")
    deltaLimit: int = Field(description="deltas per page (`deltaLimit`, 1-1000, default 20)")


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
