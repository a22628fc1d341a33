"""Wire schemas of the webhook routes (DESIGN.md §2.7): endpoints and their secrets,
deliveries, events and retries.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DeliveryStatus",
    "WebhookCreateBody",
    "WebhookDeletedResponse",
    "WebhookDeliveriesResponse",
    "WebhookDeliveryModel",
    "WebhookEndpointListResponse",
    "WebhookEndpointModel",
    "WebhookEventResponse",
    "WebhookEventType",
    "WebhookRetryResponse",
    "WebhookSecretResponse",
]

WebhookEventType = Literal[
    "verification.completed", "delta.verified", "delta.failed", "checkpoint.verified", "*"
]


class WebhookCreateBody(BaseModel):
    """Any other field is refused (``service.webhooks.ENDPOINT_FIELDS``)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
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
        description=(
            "until then deliveries are signed with the new and the previous secret; "
            "null when no previous secret signs"
        )
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
    ids: list[str] = Field(
        description="every endpoint deleted: several when ?url= names a URL registered twice"
    )


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
