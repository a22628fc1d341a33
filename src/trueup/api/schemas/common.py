"""Wire schemas every group of routes shares: the error envelope, the account-id pattern the
request bodies check, the open model that allows fields beyond those listed, and the health
probes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ACCOUNT_ID", "ErrorBody", "Health", "OpenModel", "Ready"]

ACCOUNT_ID = r"^[A-Za-z0-9_.:\-]{1,128}$"


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
