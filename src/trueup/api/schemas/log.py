"""Wire schemas of the log routes: the verifier key, inclusion and consistency proofs, proof
bundles and verification results.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from trueup.api.schemas.common import OpenModel

__all__ = ["ConsistencyProof", "InclusionProof", "LogKey", "ProofBundle", "VerifyResult"]


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


class VerifyResult(OpenModel):
    success: bool
    data: dict[str, Any] = Field(
        description="verified, proofRoot, recordedAt, and per type: "
        "treeSize and checkpoint, or the period summary"
    )
