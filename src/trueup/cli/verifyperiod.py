"""``trueup verify-period PROOF_ROOT --key KEY [--held CHECKPOINT_FILE] [--after PREVIOUS_ROOT]``:
check a period checkpoint against a pinned key (and a checkpoint you hold, and the period of the
month before: the starting balance must be where it ends).

Fetches every page of ``GET /api/v1/verify/{proofRoot}`` (public: no API key) and checks them
here, trusting nothing but the pinned verifier key (:meth:`trueup.sdk.Client.verify_period`):
every record's leaf is hashed and proven in a tree head that key signed, the records are as
many as the period's summary says, recompute the proof root and sum to its net change. With
``--held``, the tree they are proven in must be of the held checkpoint's log (the same root at
its size, else a consistency proof between the two, asked of the server). Prints
one line; exits 0 when every check passes, naming what was proven, 1 naming the check that
failed (or the server's refusal: a 404 for a root it does not know), 2 when an argument is
wrong (``--held`` naming no checkpoint the pinned key signed included), and 3 when the server
could not be asked (no reply, a proxy's page, a 429 or a 5xx: :mod:`trueup.cli.unchecked`),
which proves nothing either way.
"""

from __future__ import annotations

import argparse
import re

from trueup.cli.keyarg import (
    HeldCheckpointError,
    KeyArgumentError,
    add_key_arguments,
    read_held_checkpoint,
    read_verifier_key,
)
from trueup.cli.proof import add_server_url, server_url_problem
from trueup.cli.unchecked import NOT_CHECKED, nothing_checked_by
from trueup.core.periods import previous_period
from trueup.proof import ProofError, TreeHead, VerifiedPeriod, VerifierKey
from trueup.proof.errors import shown
from trueup.sdk import Client, TrueupError
from trueup.sdk.log_checks import refuse_empty_held

__all__ = ["ok_line", "run"]

_ROOT = re.compile(r"(0x)?[0-9a-f]{64}", re.IGNORECASE)  # as the server and the SDK read one


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trueup verify-period", description=__doc__)
    parser.add_argument("proof_root", help="the period checkpoint's proofRoot (0x and 64 hex digits)")
    add_key_arguments(parser)
    add_server_url(parser)
    parser.add_argument(
        "--page-size", type=int, default=1000, help="records fetched per request, 1..1000 (default 1000)"
    )
    parser.add_argument(
        "--held",
        metavar="CHECKPOINT_FILE",
        help="a checkpoint you hold (trueup follow's file, say): the tree the records are proven in "
        "must be of its log",
    )
    parser.add_argument(
        "--after",
        metavar="PREVIOUS_PROOF_ROOT",
        help="the proof root of the customer's period checkpoint of the month before, verified too: "
        "the starting balance must be where that period ends",
    )
    args = parser.parse_args(argv)
    problem = _argument_problem(args.proof_root, args.url, args.page_size, args.after)
    if problem is not None:
        print(f"trueup verify-period: {problem}")
        return 2
    try:
        key, held = _key_and_held(args.key, args.held, args.origin)
    except (KeyArgumentError, HeldCheckpointError) as exc:
        print(f"trueup verify-period: {exc}")
        return 2
    with Client(args.url, retries=2) as client:
        asked, of = "the period", ""
        try:
            previous = None
            if args.after is not None:  # first, and its failures said as its own
                asked, of = "the period given with --after", "the period given with --after: "
                previous = client.verify_period(args.after, key, origin=args.origin, page_size=args.page_size)
                asked, of = "the period", ""
            period = client.verify_period(args.proof_root, key, origin=args.origin, page_size=args.page_size)
            if held is not None:
                asked = "the consistency proof between the period's tree and the held one"
                client.check_same_log(TreeHead(period.tree_size, period.tree_root, 0), held)
            if previous is not None:
                asked = "the consistency proof between the two periods' trees"
                client.check_chain(previous, period)
        except ProofError as exc:
            print(f"FAILED: {of}{exc}")
            return 1
        except TrueupError as exc:
            if nothing_checked_by(exc):
                print(f"NOT CHECKED: the server could not be asked for {asked}: {shown(str(exc), 300)}")
                return NOT_CHECKED
            print(f"FAILED: the server did not give {asked}: {shown(str(exc), 300)}")
            return 1
    print(ok_line(period, held, args.after))
    return 0


def _key_and_held(
    key_argument: str, held_file: str | None, origin: str | None
) -> tuple[VerifierKey, TreeHead | None]:
    """``--key`` and the head ``--held`` holds, checked against it; the errors say what is wrong."""
    key = read_verifier_key(key_argument)
    if held_file is None:
        return key, None
    held = read_held_checkpoint(held_file, key, origin or key.name)[1]
    try:
        refuse_empty_held(held)
    except ValueError as exc:
        raise HeldCheckpointError(f"{held_file}: {exc}") from None
    return key, held


def ok_line(period: VerifiedPeriod, held: TreeHead | None = None, after: str | None = None) -> str:
    """What was proven, from the records' leaves; the starting balance is the server's word
    (it rests on the deltas before the period), and the line says so, unless it was checked
    to be where the period of the month before (``after``, its proof root) ends. With
    ``held``, that the tree is of the held checkpoint's log."""
    records, they, sums = (
        ("1 record, proven", "it recomputes", "its amount is")
        if period.record_count == 1
        else (f"{period.record_count} records, each proven", "they recompute", "they sum to")
    )
    return (
        f"OK: period {period.period} of customer {period.customer_id!r} of tenant {period.tenant!r}: "
        f"{records} in the tree of size {period.tree_size} with root {period.tree_root.hex()}, "
        f"signed by the pinned key{_of_held(period, held)}; {they} proof root "
        f"0x{period.proof_root.hex()} and {sums} a net change of {period.net_change}; "
        f"{_starting(period, after)}, so the period ends at {period.ending_balance}"
    )


def _starting(period: VerifiedPeriod, after: str | None) -> str:
    if after is None:
        return f"the server states a starting balance of {period.starting_balance}"
    return (
        f"its starting balance of {period.starting_balance} is where period {previous_period(period.period)} "
        f"(proof root 0x{after.lower().removeprefix('0x')}, verified the same way, in the same log) ends"
    )


def _of_held(period: VerifiedPeriod, held: TreeHead | None) -> str:
    if held is None:
        return ""
    if held.size == period.tree_size:
        return ", the held checkpoint's"
    return f" and proven consistent with the held checkpoint of size {held.size}"


def _argument_problem(proof_root: str, url: str, page_size: int, after: str | None) -> str | None:
    if not _ROOT.fullmatch(proof_root):
        return f"{shown(proof_root)} is not a proof root (0x and 64 hex digits)"
    if after is not None and not _ROOT.fullmatch(after):
        return f"--after: {shown(after)} is not a proof root (0x and 64 hex digits)"
    if not 1 <= page_size <= 1000:
        return f"--page-size must be 1..1000, got {page_size}"
    return server_url_problem(url)
