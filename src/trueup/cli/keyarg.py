"""A verifier key given on the command line (``--key``): the key itself or a file holding it;
and a checkpoint held in a file, checked against that key (``trueup follow``, ``trueup verify
--held``).

Shared by ``trueup verify``, ``trueup follow`` and ``trueup audit``; imports only the standard
library and :mod:`trueup.proof`, so the offline verifier keeps its few dependencies.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from trueup.proof import ProofError, TreeHead, VerifierKey, parse_verifier_key, verify_checkpoint

__all__ = [
    "MAX_NOTE_BYTES",
    "HeldCheckpointError",
    "KeyArgumentError",
    "add_key_arguments",
    "read_held_checkpoint",
    "read_verifier_key",
]

MAX_NOTE_BYTES = 64 * 1024
"""A checkpoint note is a few hundred bytes; a file or a kept note longer than this holds
something else."""


def add_key_arguments(parser: argparse.ArgumentParser) -> None:
    """``--key`` (required) and ``--origin``, as every command that checks checkpoints takes them."""
    parser.add_argument(
        "--key", required=True, help="the log's verifier key (name+id+base64), or a file holding it"
    )
    parser.add_argument(
        "--origin",
        help="the log's name, which the checkpoint must state (default: the key's name, "
        "as Trueup names its key after its log)",
    )


class KeyArgumentError(ValueError):
    """``--key`` is empty, names no file, or holds no verifier key; the message says which."""


def read_verifier_key(value: str) -> VerifierKey:
    """The verifier key ``value`` is (``name+id+base64``) or the file named ``value`` holds."""
    text = value.strip()
    if not text:
        raise KeyArgumentError("--key is empty (did the command that was to print the key fail?)")
    try:
        return parse_verifier_key(text)
    except ProofError as not_a_key:
        as_key = not_a_key
    path = Path(value)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_NOTE_BYTES + 1)
        # A byte order mark, which some editors write, is not part of the key (as for a bundle).
        content = raw.decode("utf-8").removeprefix("\ufeff").strip()
    except FileNotFoundError:
        raise KeyArgumentError(
            f"--key {text[:120]!r} is neither a verifier key ({as_key}) nor a file"
        ) from None
    except (OSError, ValueError) as exc:  # a directory, unreadable, not UTF-8
        raise KeyArgumentError(f"cannot read the key file {value}: {exc}") from None
    if len(raw) > MAX_NOTE_BYTES:  # /dev/zero, a log: read whole, it would take all memory
        raise KeyArgumentError(
            f"the file {value} is longer than a verifier key can be ({MAX_NOTE_BYTES} bytes)"
        )
    try:
        return parse_verifier_key(content)
    except ProofError as exc:
        raise KeyArgumentError(f"the file {value} holds no verifier key: {exc}") from None


class HeldCheckpointError(ValueError):
    """A file that should hold a checkpoint does not exist (``missing``), cannot be read, or
    holds no checkpoint the pinned key signed; the message says which."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def read_held_checkpoint(name: str | Path, key: VerifierKey, origin: str) -> tuple[str, TreeHead]:
    """The checkpoint note held in the file ``name`` and its head, checked against the pinned
    key and ``origin``.

    A byte order mark and Windows line ends, which an editor may have written, are not part of
    the note (a note holds no carriage return)."""
    if name == "":  # Path("") would be the working directory
        raise HeldCheckpointError("the checkpoint file's name is empty (did the command giving it fail?)")
    path = Path(name)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_NOTE_BYTES + 1)
    except FileNotFoundError:
        raise HeldCheckpointError(f"{path} does not exist", missing=True) from None
    except OSError as exc:  # a directory, no permission
        raise HeldCheckpointError(f"cannot read {path}: {exc}") from None
    if len(raw) > MAX_NOTE_BYTES:
        raise HeldCheckpointError(f"{path} is longer than a checkpoint can be ({MAX_NOTE_BYTES} bytes)")
    try:
        note = raw.decode("utf-8").removeprefix("\ufeff").replace("\r\n", "\n")
        return note, verify_checkpoint(note, key, origin=origin)
    except (UnicodeDecodeError, ProofError) as exc:
        raise HeldCheckpointError(f"{path} holds no checkpoint signed by the pinned key: {exc}") from None
