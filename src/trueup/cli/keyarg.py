"""A verifier key given on the command line (``--key``): the key itself or a file holding it.

Shared by ``trueup verify`` and ``trueup audit``; imports only the standard library and
:mod:`trueup.proof`, so the offline verifier keeps its few dependencies.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from trueup.proof import ProofError, VerifierKey, parse_verifier_key

__all__ = ["KeyArgumentError", "add_key_arguments", "read_verifier_key"]


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
        # A byte order mark, which some editors write, is not part of the key (as for a bundle).
        content = path.read_text("utf-8").removeprefix("\ufeff").strip()
    except FileNotFoundError:
        raise KeyArgumentError(
            f"--key {text[:120]!r} is neither a verifier key ({as_key}) nor a file"
        ) from None
    except (OSError, ValueError) as exc:  # a directory, unreadable, not UTF-8
        raise KeyArgumentError(f"cannot read the key file {value}: {exc}") from None
    try:
        return parse_verifier_key(content)
    except ProofError as exc:
        raise KeyArgumentError(f"the file {value} holds no verifier key: {exc}") from None
