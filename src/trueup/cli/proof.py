"""``trueup proof ANCHOR_ID [--tree-size N] > bundle.json``: fetch an offline proof bundle
through the API, in the newest signed tree head or, with ``--tree-size``, in the head of that
size (one you hold: ``trueup verify --held`` checks the bundle against it).

Exits 0 with the bundle on stdout, 1 when the server refused it (a delta it does not know, a
key it does not take) or sent something that is not the bundle asked for, 2 when an argument is
wrong, and 3 when the server could not be asked (:mod:`trueup.cli.unchecked`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from typing import NamedTuple

import httpx

from trueup.cli.unchecked import NOT_CHECKED, nothing_checked
from trueup.core.url_passwords import without_password
from trueup.proof import ProofError, load_bundle
from trueup.proof.errors import shown
from trueup.sdk import TrueupError
from trueup.sdk.replies import ACCEPTED_ENCODING, send_bounded

__all__ = ["add_server_url", "run", "server_url_problem"]

_MAX_REPLY_BYTES = 1024 * 1024
"""The longest reply read: a bundle is a few KB."""
_ANCHOR = re.compile(r"a_(0|[1-9][0-9]{0,19})")


def add_server_url(parser: argparse.ArgumentParser) -> None:
    """``--url``, the server asked (env ``TRUEUP_URL``)."""
    parser.add_argument(
        "--url",
        default=os.environ.get("TRUEUP_URL", "http://127.0.0.1:8000"),
        help="server base URL (env TRUEUP_URL; default http://127.0.0.1:8000)",
    )


def server_url_problem(url: str) -> str | None:
    """What is wrong with ``--url``, checked before anything is sent; ``None`` if nothing."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return f"--url {shown(without_password(url))} is not a server URL: {exc}"
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return f"--url {shown(without_password(url))} is not a server URL (http:// or https:// and a host)"
    if parsed.query or parsed.fragment:  # the API's paths go after it: a query would end up before them
        return f"--url {shown(without_password(url))} is not a server URL: it has a query or fragment"
    return None


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trueup proof", description=__doc__)
    parser.add_argument("anchor_id", help="a_<leaf index> of one of your deltas")
    add_server_url(parser)
    parser.add_argument(
        "--api-key", default=os.environ.get("TRUEUP_API_KEY"), help="API key (env TRUEUP_API_KEY)"
    )
    parser.add_argument(
        "--tree-size",
        type=_tree_size,
        help="the size of a signed tree head to prove the delta in (one you hold); the newest by default",
    )
    args = parser.parse_args(argv)
    problem = _argument_problem(args.anchor_id, args.api_key)
    if problem is not None:
        print(f"trueup proof: {problem}", file=sys.stderr)
        return 2
    url = f"{args.url.rstrip('/')}/api/v1/log/proof/bundle/{args.anchor_id}"
    if args.tree_size is not None:
        url += f"?treeSize={args.tree_size}"
    headers = {"X-Api-Key": args.api_key, "Accept-Encoding": ACCEPTED_ENCODING}
    try:
        with httpx.Client(timeout=30) as http:
            reply = send_bounded(http, http.build_request("GET", url, headers=headers), _MAX_REPLY_BYTES)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        print(
            f"trueup proof: --url {without_password(args.url)!r} is not a server URL: {exc}", file=sys.stderr
        )
        return 2
    except httpx.HTTPError as exc:
        print(f"trueup proof: cannot reach {without_password(args.url)}: {exc}", file=sys.stderr)
        return NOT_CHECKED
    except TrueupError as exc:  # a reply longer than any bundle, or in a coding not asked for
        print(f"trueup proof: {exc.message}", file=sys.stderr)
        return NOT_CHECKED
    bundle, wrong = _bundle_in(reply, args.anchor_id, args.tree_size)
    if bundle is None:
        print(f"trueup proof: {wrong.text}", file=sys.stderr)
        return NOT_CHECKED if nothing_checked(reply.status_code, wrong.servers_reply) else 1
    print(json.dumps(bundle, indent=2))
    return 0


def _tree_size(text: str) -> int:
    """``--tree-size``: a tree head's size, 1 to 2**62 as the API takes it."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 2**62:
        raise argparse.ArgumentTypeError(f"must be a tree size, 1 to 2**62, got {text[:40]!r}")
    return int(text)


def _argument_problem(anchor: str, api_key: str | None) -> str | None:
    if not api_key:
        return "an API key is needed (--api-key or TRUEUP_API_KEY)"
    if not api_key.isascii() or not api_key.isprintable():
        return "the API key must be printable ASCII (pk_live_… or pk_test_…)"
    if not _ANCHOR.fullmatch(anchor):
        return f"{anchor!r} is not an anchor id (a_<leaf index>)"
    return None


class _Problem(NamedTuple):
    text: str
    servers_reply: bool = True
    """False for a reply that is not the server's: not a JSON object (a proxy's page, say)."""


def _bundle_in(
    reply: httpx.Response, anchor: str, tree_size: int | None
) -> tuple[Mapping[str, object] | None, _Problem]:
    """The bundle for ``anchor`` (in the tree of ``tree_size`` when given) in the server's reply,
    or ``None`` and what is wrong with it."""
    try:
        body = reply.json()
    except (ValueError, RecursionError):  # not JSON, or nested past the interpreter's depth
        body = None
    if not isinstance(body, dict):
        text = f"{reply.status_code}, not a Trueup reply: {reply.text[:200]!r}"
        return None, _Problem(text, servers_reply=False)
    if reply.status_code != 200:
        # The whole message (a server's are under 300 characters): its end says what to do.
        message = f"{reply.status_code} {shown(body.get('message', reply.text[:200]), 300)}"
        return None, _Problem(message)
    try:  # as `trueup verify` will read it: no NaN, no member given twice
        bundle = load_bundle(reply.text)
    except ProofError as exc:
        return None, _Problem(f"the server's reply is not a bundle `trueup verify` can read: {exc}")
    # The bundle is checked offline (trueup verify), but a server answering for another delta
    # is told here, where the requested anchor is known.
    if bundle.get("anchorId") != anchor:
        got = shown(bundle.get("anchorId"))
        return None, _Problem(f"the server sent no bundle for {anchor} (got {got})")
    size = bundle.get("treeSize")
    if tree_size is not None and (type(size) is not int or size != tree_size):  # not true for 1, nor 3.0
        got = shown(size)
        return None, _Problem(f"the server sent a bundle in the tree of size {got}, not {tree_size}")
    return bundle, _Problem("")
