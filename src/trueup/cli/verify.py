"""``trueup verify BUNDLE --key KEY``: check a proof bundle offline.

Imports only the standard library, ``cryptography`` and :mod:`trueup.proof`: it trusts
nothing but the pinned verifier key. Prints one line; exits 0 when every check passes and 1
naming the check that failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trueup.proof import ProofError, parse_verifier_key, verify_bundle

__all__ = ["run"]


def _read_key(value: str) -> str:
    path = Path(value)
    if "+" not in value and path.exists():
        return path.read_text(encoding="utf-8").strip()
    return value.strip()


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trueup verify", description=__doc__)
    parser.add_argument("bundle", help="bundle.json from `trueup proof` (- for stdin)")
    parser.add_argument(
        "--key", required=True, help="the log's verifier key (name+id+base64), or a file holding it"
    )
    parser.add_argument(
        "--origin",
        help="the log's name, which the checkpoint must state (default: the key's name, "
        "as Trueup names its key after its log)",
    )
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.bundle == "-" else Path(args.bundle).read_text("utf-8")
        bundle = json.loads(text)
    except (OSError, ValueError) as exc:
        print(f"FAILED: cannot read the bundle: {exc}")
        return 1
    except RecursionError:
        print("FAILED: cannot read the bundle: it is nested too deeply to be a bundle")
        return 1
    if isinstance(bundle, dict) and isinstance(bundle.get("data"), dict):
        bundle = bundle["data"]  # the API's envelope, saved as is
    try:
        key_text = _read_key(args.key)
    except (OSError, ValueError) as exc:  # a directory, unreadable, not UTF-8
        print(f"FAILED: cannot read the key: {exc}")
        return 1
    try:
        key = parse_verifier_key(key_text)
        # A note signed by the pinned key but naming another log is not this log's checkpoint.
        head = verify_bundle(bundle, key, origin=args.origin or key.name)
    except ProofError as exc:
        print(f"FAILED: {exc}")
        return 1
    print(
        f"OK: {bundle.get('anchorId')} is leaf {bundle.get('leafIndex')} of the tree of size "
        f"{head.size} with root {head.root.hex()}, signed by the pinned key"
    )
    return 0
