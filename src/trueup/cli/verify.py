"""``trueup verify BUNDLE --key KEY [--held CHECKPOINT_FILE]``: check a proof bundle offline.

With ``--held``, the bundle must prove the delta in the very tree of a checkpoint you hold
(``trueup follow``'s file, say): same size, same root. ``trueup proof ANCHOR --tree-size N``
fetches the bundle of that size. A bundle signed for the held size with another root (two
histories) leaves its checkpoint beside the held file as ``CHECKPOINT_FILE.rejected``, as
``trueup follow`` does (:mod:`trueup.cli.rejected`).

Imports only the standard library, ``cryptography``, :mod:`trueup.proof`,
:mod:`trueup.cli.keyarg` and :mod:`trueup.cli.rejected` (which loads the project's private-file
writer, itself standard library only, when it keeps a fork's checkpoint): it trusts nothing but
the pinned verifier key. Prints one line; exits
0 when every check passes, naming the delta the leaf proves (amount, customer, tenant, key,
time), 1 naming the check that failed (or what is wrong with the bundle), and 2 when there is
nothing to check: ``--key`` is empty, names no file or holds no verifier key, ``--held`` names
no checkpoint the pinned key signed, or the bundle's file cannot be read (as ``grep`` and
``diff`` say trouble with 2: a script that alarms on 1 is not told of tampering when a path was
wrong).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

from trueup.cli.keyarg import (
    HeldCheckpointError,
    KeyArgumentError,
    add_key_arguments,
    read_held_checkpoint,
    read_verifier_key,
)
from trueup.cli.rejected import keep_rejected
from trueup.proof import ProofError, TreeHead, leaf_fields_from_json, load_bundle, verify_bundle
from trueup.proof.errors import shown

__all__ = ["run"]


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trueup verify", description=__doc__)
    parser.add_argument("bundle", help="bundle.json from `trueup proof` (- for stdin)")
    add_key_arguments(parser)
    parser.add_argument(
        "--anchor", help="the anchor id (a_<leaf index>) the bundle must prove; any other fails"
    )
    parser.add_argument(
        "--held",
        metavar="CHECKPOINT_FILE",
        help="a checkpoint you hold (trueup follow's file, say): the bundle must prove the delta in "
        "that tree, same size and root (fetch it with trueup proof ANCHOR --tree-size SIZE)",
    )
    args = parser.parse_args(argv)
    held: TreeHead | None = None
    try:  # first: a command asked wrongly is exit 2 whatever the bundle file holds
        key = read_verifier_key(args.key)
        if args.held is not None:
            held = read_held_checkpoint(args.held, key, args.origin or key.name)[1]
    except (KeyArgumentError, HeldCheckpointError) as exc:  # asked wrongly, not a check that failed
        print(f"FAILED: {exc}")
        return 2
    text = _bundle_text(args.bundle)
    if isinstance(text, _Unread):
        print(f"FAILED: {text.problem}")
        return text.exit_code
    try:
        bundle = load_bundle(text)
        # A note signed by the pinned key but naming another log is not this log's checkpoint.
        head = verify_bundle(bundle, key, origin=args.origin or key.name, held=held)
        leaf = leaf_fields_from_json(bundle["leaf"])  # valid: verify_bundle hashed it
    except ProofError as exc:
        # Another history at the held size: the bundle's checkpoint kept beside the held file, as
        # trueup follow keeps one it rejects.
        kept = "" if args.held is None else keep_rejected(Path(args.held), exc.rejected_checkpoint, key)
        print(f"FAILED: {exc}{kept}")
        return 1
    anchor = bundle["anchorId"]
    if args.anchor is not None and anchor != args.anchor:
        print(f"FAILED: the bundle proves {anchor}, not {shown(args.anchor)}")
        return 1
    # What was proven, from the leaf itself: the file's other members say nothing a reader
    # should take on trust. In full (repr keeps it on one line): two keys alike in their first
    # 60 characters must not read the same.
    tree = "the held tree" if held is not None else "the tree"
    print(
        f"OK: {anchor} is leaf {bundle['leafIndex']} of {tree} of size {head.size} with root "
        f"{head.root.hex()}, signed by the pinned key: delta {leaf.delta} for customer "
        f"{leaf.customer_id!r} of tenant {leaf.tenant!r}, key {leaf.key!r}, "
        f"occurred at {leaf.occurred_at}"
    )
    return 0


MAX_BUNDLE_BYTES = 1024 * 1024
"""A proof bundle is a leaf, at most 64 proof nodes and a checkpoint note: a few KiB, however
large the log. A longer file is not one, and is not read further."""


class _Unread(NamedTuple):
    problem: str
    exit_code: int


def _bundle_text(name: str) -> str | _Unread:
    """The bundle file's text (``-``: standard input), or why there is none to check."""
    try:
        if name == "-":
            text = sys.stdin.read(MAX_BUNDLE_BYTES + 1)  # characters: at least as many bytes
        else:
            with Path(name).open(encoding="utf-8") as file:
                text = file.read(MAX_BUNDLE_BYTES + 1)
    except OSError as exc:  # no file, a directory, no permission: nothing was checked
        return _Unread(f"cannot read the bundle: {exc}", 2)
    except ValueError as exc:  # the file is there and is not UTF-8 text: a bundle that fails
        return _Unread(f"cannot read the bundle: {exc}", 1)
    if len(text) > MAX_BUNDLE_BYTES:  # /dev/zero, a log: read whole, it would take all memory
        return _Unread(f"the bundle is longer than a proof bundle can be ({MAX_BUNDLE_BYTES:,} bytes)", 1)
    text = text.removeprefix("\ufeff")  # a byte order mark, which some editors write, is not JSON
    if not text.strip():  # what `trueup proof … > bundle.json` leaves when the proof fails
        return _Unread("the bundle is empty (did the command that was to write it fail?)", 1)
    return text
