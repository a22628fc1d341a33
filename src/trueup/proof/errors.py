"""The errors of the verification layer: one root, one subclass per kind of check.

Every failure in :mod:`trueup.proof` raises a subclass of :class:`ProofError`, so a caller
that only wants "did it verify?" catches one class, while the API and the CLI can map each
kind to its own reply. Messages are one line and name the failed check and the values
involved, in the style of sigstore-python's verifier: ``inclusion proof has 2 hashes; leaf
5 in a tree of 8 leaves needs 3``.
"""

from __future__ import annotations

__all__ = [
    "BundleError",
    "CheckpointError",
    "ConsistencyProofError",
    "InclusionProofError",
    "LeafEncodingError",
    "PeriodError",
    "ProofError",
    "TreeError",
    "shown",
]

_SHOWN_LIMIT = 60


class ProofError(Exception):
    """Root of every error raised by :mod:`trueup.proof`."""

    rejected_checkpoint: str | None = None
    """The signed note a check rejected, where the pinned key's signature on it verified (set
    by :meth:`trueup.sdk.Client.follow`: a newer checkpoint that no valid proof showed to extend
    the one held; and by :func:`trueup.proof.verify_bundle` given a held head: a bundle's
    checkpoint of the held size with another root). With the one held, what anyone holding the
    key can check; ``None`` otherwise."""


class TreeError(ProofError):
    """A tree operation was asked for something the tree cannot give.

    Raised for a leaf index or tree size out of range, a stored node that is missing or is
    not a 32-byte hash, or a compact range whose hashes do not fit its size. It signals a
    caller bug or corrupt storage, never a failed verification.
    """


class InclusionProofError(ProofError):
    """An RFC 9162 §2.1.3 inclusion proof did not verify (or could not be checked)."""


class ConsistencyProofError(ProofError):
    """An RFC 9162 §2.1.4 consistency proof did not verify (or could not be checked)."""


class LeafEncodingError(ProofError):
    """A value cannot be canonicalised (RFC 8785), or leaf bytes/fields are malformed."""


class CheckpointError(ProofError):
    """A signed note, checkpoint, verifier key or signing key is malformed or does not verify."""


class BundleError(ProofError):
    """An offline proof bundle is malformed or one of its checks failed.

    The message starts with the bundle field at fault (``bundle.treeSize: ...``); when the
    failure came from a lower-level check, that error is chained as ``__cause__``.
    """


class PeriodError(ProofError):
    """A period checkpoint's pages are malformed or one of their checks failed; the message
    starts with the page and field at fault (``page 2.records[3].amount: ...``)."""


def shown(value: object, limit: int = _SHOWN_LIMIT) -> str:
    """Return ``repr(value)`` cut to ``limit`` (60) characters, for echoing untrusted input in
    a message.

    ``repr`` escapes newlines and control characters, so the message stays on one line; the
    cut keeps a hostile multi-megabyte field out of logs.
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
