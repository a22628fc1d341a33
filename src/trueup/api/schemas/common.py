"""Wire schemas every group of routes shares: the error envelope, the account-id pattern the
request bodies check, the open model that allows fields beyond those listed, and the health
probes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

__all__ = [
    "ACCOUNT_ID",
    "ANCHOR_ID",
    "DELIVERY_STATUS",
    "IDEMPOTENCY_KEY",
    "PERIOD",
    "ROOT",
    "ErrorBody",
    "Health",
    "OpenModel",
    "Ready",
    "documented_as",
]

# The patterns below tell the OpenAPI document what the routes accept. The routes check their
# input themselves, so that every 400 names the field and the value in the domain's words; each
# pattern states the same rule (a value it allows is never refused for its form).
ACCOUNT_ID = r"^[A-Za-z0-9_.:\-]{1,128}$"
PERIOD = r"^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$"
"""YYYY-MM, a month from 1970-01 to 9999-12."""
ANCHOR_ID = r"^a_(0|[1-9][0-9]{0,39})$"
ROOT = r"^(0[xX])?[0-9a-fA-F]{64}$"
"""32 bytes of hex, ``0x`` optional."""
DELIVERY_STATUS = (
    r"^([Pp][Ee][Nn][Dd][Ii][Nn][Gg]|[Dd][Ee][Ll][Ii][Vv][Ee][Rr][Ee][Dd]|[Ff][Aa][Ii][Ll][Ee][Dd])?$"
)
"""pending, delivered or failed, in any case; empty for all."""
IDEMPOTENCY_KEY = r"^[!-~]([ -~]{0,253}[!-~])?$"
"""1-255 printable ASCII characters (the route takes any printable ones)."""


def documented_as(pattern: str, description: str = "", max_length: int | None = None) -> WithJsonSchema:
    """A string parameter as OpenAPI shows it, beside a ``Query``/``Path`` the route checks itself."""
    schema: dict[str, Any] = {"type": "string", "pattern": pattern}
    if max_length is not None:
        schema["maxLength"] = max_length
    if description:
        schema["description"] = description
    return WithJsonSchema(schema)


class OpenModel(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorBody(BaseModel):
    success: Literal[False]
    statusCode: int
    error: str = Field(description="HTTP reason phrase")
    code: str = Field(description="stable UPPER_SNAKE error code")
    message: str = Field(description="what was wrong, naming the field")
    retryAfterSeconds: int | None = None
    requestId: str | None = None


class Health(BaseModel):
    status: Literal["ok"]


class _ReadyData(BaseModel):
    database: Literal["ok", "unavailable"]
    sequencer: Literal["leader", "standby", "down", "off"] = Field(
        description="this process's sequencer role"
    )
    sequencerElected: bool | None = Field(
        description="whether some process, this one or another on any host, holds the sequencer role "
        "now (null when the database does not answer, or the lock file cannot be opened to ask)"
    )
    committer: Literal["thread", "process", "down"]
    dispatcher: Literal["leader", "standby", "down", "off"] = Field(
        description="this process's dispatcher role"
    )
    dispatcherElected: bool | None = Field(
        description="whether some process holds the webhook dispatcher role now (null when the "
        "database does not answer, or the lock file cannot be opened to ask)"
    )
    writes: str = Field(
        description='"ok", or "failing: " and what the last group commit\'s writers were told (a full '
        "disk, the database down): reads may still be served"
    )
    queueDepth: int | None
    oldestQueuedAgeSeconds: float | None
    host: str
    pid: int


class Ready(BaseModel):
    success: bool
    data: _ReadyData
