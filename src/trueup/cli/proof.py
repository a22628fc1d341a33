"""``trueup proof ANCHOR_ID > bundle.json``: fetch an offline proof bundle through the API."""

from __future__ import annotations

import argparse
import json
import os
import sys

import httpx

__all__ = ["run"]


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trueup proof", description=__doc__)
    parser.add_argument("anchor_id", help="a_<leaf index> of one of your deltas")
    parser.add_argument(
        "--url",
        default=os.environ.get("TRUEUP_URL", "http://127.0.0.1:8000"),
        help="server base URL (env TRUEUP_URL)",
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("TRUEUP_API_KEY"), help="API key (env TRUEUP_API_KEY)"
    )
    args = parser.parse_args(argv)
    if not args.api_key:
        print("trueup proof: an API key is needed (--api-key or TRUEUP_API_KEY)", file=sys.stderr)
        return 2
    url = f"{args.url.rstrip('/')}/api/v1/log/proof/bundle/{args.anchor_id}"
    try:
        reply = httpx.get(url, headers={"X-Api-Key": args.api_key}, timeout=30)
    except httpx.HTTPError as exc:
        print(f"trueup proof: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    body = reply.json() if reply.headers.get("content-type", "").startswith("application/json") else {}
    if reply.status_code != 200:
        print(f"trueup proof: {reply.status_code} {body.get('message', reply.text[:200])}", file=sys.stderr)
        return 1
    print(json.dumps(body["data"], indent=2))
    return 0
