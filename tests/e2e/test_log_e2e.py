"""The verification layer end to end: checkpoints, proofs, bundles, offline verify, audit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Running
from tests.e2e.server import create_key, trueup, wait_until
from trueup.proof import (
    ConsistencyProofError,
    TreeHead,
    parse_verifier_key,
    verify_checkpoint,
    verify_consistency,
    verify_inclusion,
)
from trueup.sdk import Client
from trueup.service.signing import load_signer


def _write_and_wait(running: Running, prefix: str, count: int) -> list[dict[str, object]]:
    body = {"items": [{"key": f"{prefix}-{i}", "accountId": "log-cust", "bits": i + 1} for i in range(count)]}
    reply = httpx.post(f"{running.url}/api/v1/writes", headers=running.headers, json=body)
    assert reply.status_code == 202, reply.text
    request_id = reply.json()["data"]["requestId"]
    status_url = f"{running.url}/api/v1/writes/{request_id}"
    wait_until(lambda: httpx.get(status_url, headers=running.headers).json()["data"]["status"] == "verified")
    items: list[dict[str, object]] = httpx.get(status_url, headers=running.headers).json()["data"]["items"]
    return items


def _verifier_key(running: Running) -> str:
    reply = httpx.get(f"{running.url}/api/v1/log/key")
    assert reply.status_code == 200
    key: str = reply.json()["data"]["verifierKey"]
    return key


def test_checkpoint_is_a_signed_note_verifiable_with_the_published_key(running: Running) -> None:
    _write_and_wait(running, "cp", 2)
    note = httpx.get(f"{running.url}/api/v1/log/checkpoint")
    assert note.status_code == 200 and note.headers["content-type"].startswith("text/plain")
    head = verify_checkpoint(note.text, _verifier_key(running))
    assert head.size >= 2


def test_inclusion_proof_from_the_api_verifies(running: Running) -> None:
    items = _write_and_wait(running, "inc", 5)
    anchor = items[3]["anchorId"]
    reply = httpx.get(
        f"{running.url}/api/v1/log/proof/inclusion", params={"anchorId": anchor}, headers=running.headers
    )
    assert reply.status_code == 200, reply.text
    data = reply.json()["data"]
    bundle = httpx.get(f"{running.url}/api/v1/log/proof/bundle/{anchor}", headers=running.headers).json()[
        "data"
    ]
    verify_inclusion(
        bytes.fromhex(bundle["leafHash"]),
        data["leafIndex"],
        data["treeSize"],
        [bytes.fromhex(p) for p in data["proof"]],
        bytes.fromhex(data["rootHash"][2:]),
    )
    other = create_key(running.data_dir, running.database_url, "intruder")
    hidden = httpx.get(
        f"{running.url}/api/v1/log/proof/inclusion", params={"anchorId": anchor}, headers={"X-Api-Key": other}
    )
    assert hidden.status_code == 404
    # An anchor of as many digits as the other routes take is looked up there too (it was a 400
    # past 32 characters, where the bundle and delta routes answer 404 up to 40 digits).
    for route in ("/api/v1/log/proof/inclusion?anchorId=", "/api/v1/log/proof/bundle/"):
        far = httpx.get(f"{running.url}{route}a_{'9' * 40}", headers=running.headers)
        assert far.status_code == 404, (route, far.text)


def test_a_head_seen_earlier_is_proven_consistent_with_a_later_one(running: Running) -> None:
    _write_and_wait(running, "cons-a", 3)
    key = _verifier_key(running)
    earlier = verify_checkpoint(httpx.get(f"{running.url}/api/v1/log/checkpoint").text, key)
    _write_and_wait(running, "cons-b", 7)
    later = verify_checkpoint(httpx.get(f"{running.url}/api/v1/log/checkpoint").text, key)
    reply = httpx.get(
        f"{running.url}/api/v1/log/proof/consistency", params={"from": earlier.size, "to": later.size}
    )
    assert reply.status_code == 200, reply.text
    proof = [bytes.fromhex(p) for p in reply.json()["data"]["proof"]]
    verify_consistency(earlier.size, later.size, earlier.root, later.root, proof)
    # Backwards is a 400 naming "from", whether or not a head of that size exists.
    for start in (later.size, later.size + 1_000):
        backwards = httpx.get(
            f"{running.url}/api/v1/log/proof/consistency", params={"from": start, "to": earlier.size}
        )
        assert backwards.status_code == 400, backwards.text
        assert backwards.json()["message"] == f"from: must not exceed to ({start} > {earlier.size})"


def test_public_verify_knows_our_roots_and_nothing_else(running: Running) -> None:
    _write_and_wait(running, "ver", 1)
    head = verify_checkpoint(httpx.get(f"{running.url}/api/v1/log/checkpoint").text, _verifier_key(running))
    known = httpx.get(f"{running.url}/api/v1/verify/0x{head.root.hex()}")
    assert known.status_code == 200
    data = known.json()["data"]
    assert data["verified"] is True and data["treeSize"] == head.size
    assert "records" not in data and "customerId" not in json.dumps(data)
    unknown = httpx.get(f"{running.url}/api/v1/verify/0x{'ab' * 32}")
    assert unknown.status_code == 404 and unknown.json()["data"]["verified"] is False
    assert httpx.get(f"{running.url}/api/v1/verify/not-hex").status_code == 400
    spaced = httpx.get(f"{running.url}/api/v1/verify/{'00' * 31}%20%20")  # fromhex alone skips spaces
    assert spaced.status_code == 400 and "is not hex" in spaced.json()["message"]


def test_proof_bundle_verifies_offline_and_tampering_is_named(running: Running, tmp_path: Path) -> None:
    items = _write_and_wait(running, "bundle", 4)
    anchor = str(items[2]["anchorId"])
    fetched = _proof(running, anchor)
    assert fetched.returncode == 0, fetched.stderr
    bundle_path = tmp_path / "bundle.json"
    bundle_path.write_text(fetched.stdout)
    key = _verifier_key(running)
    checked = _offline_verify(bundle_path, key)
    assert checked.returncode == 0, checked.stdout
    assert checked.stdout.startswith(f"OK: {anchor}")
    bundle = json.loads(fetched.stdout)
    bundle["leaf"]["delta"] = bundle["leaf"]["delta"] + 1
    bundle_path.write_text(json.dumps(bundle))
    tampered = _offline_verify(bundle_path, key)
    assert tampered.returncode == 1
    assert tampered.stdout.startswith("FAILED:") and tampered.stdout.count("\n") == 1


def test_a_bundle_in_a_held_tree_is_checked_against_the_held_checkpoint(
    running: Running, tmp_path: Path
) -> None:
    """A party holding a checkpoint (trueup follow's file) checks a delta in that very tree:
    `trueup proof --tree-size` fetches the bundle of that size and `trueup verify --held`
    requires it; the newest bundle, of a larger tree, does not pass for it."""
    items = _write_and_wait(running, "held-a", 2)
    anchor = str(items[1]["anchorId"])
    key = _verifier_key(running)
    held_note = httpx.get(f"{running.url}/api/v1/log/checkpoint").text
    held = verify_checkpoint(held_note, key)
    held_path = tmp_path / "held.checkpoint"
    held_path.write_text(held_note)
    later = _write_and_wait(running, "held-b", 3)  # the log grows past the held checkpoint

    newest = _proof(running, anchor)
    assert newest.returncode == 0, newest.stderr
    assert json.loads(newest.stdout)["treeSize"] > held.size
    newest_path = tmp_path / "newest.json"
    newest_path.write_text(newest.stdout)
    assert _offline_verify(newest_path, key).returncode == 0  # valid, in another tree
    refused = _offline_verify(newest_path, key, "--held", str(held_path))
    assert refused.returncode == 1, refused.stdout
    assert f"not in the held checkpoint's tree of size {held.size}" in refused.stdout
    assert f"trueup proof --tree-size {held.size}" in refused.stdout

    at_held = _proof(running, anchor, "--tree-size", str(held.size))
    assert at_held.returncode == 0, at_held.stderr
    bundle = json.loads(at_held.stdout)
    assert bundle["treeSize"] == held.size and bundle["checkpoint"] == held_note
    at_held_path = tmp_path / "at-held.json"
    at_held_path.write_text(at_held.stdout)
    checked = _offline_verify(at_held_path, key, "--held", str(held_path), "--anchor", anchor)
    assert checked.returncode == 0, checked.stdout
    assert checked.stdout.startswith(
        f"OK: {anchor} is leaf {anchor[2:]} of the held tree of size {held.size} with root {held.root.hex()}"
    )
    with Client(running.url, running.key) as client:
        verified = client.verify_delta(anchor, key, held=held_note)
        assert (verified.tree_size, verified.root) == (held.size, held.root)
        assert client.proof_bundle(anchor, tree_size=held.size) == bundle
        # A held checkpoint of a size this log never signed (the log's own key, turned against
        # its clients, signed it for another history): a log keeps every head it signed.
        signer = load_signer(running.data_dir / "signing-key.pem", parse_verifier_key(key).name)
        elsewhere = signer.sign(signer.name, TreeHead(held.size + 10**6, b"\x07" * 32, 1))
        never = f"no signed tree head of the held size {held.size + 10**6}"
        with pytest.raises(ConsistencyProofError, match=never):
            client.verify_delta(anchor, key, held=elsewhere)

    # A delta sealed after the held checkpoint is in no bundle of it; a size no head has is a 404.
    late = str(later[0]["anchorId"])
    url = f"{running.url}/api/v1/log/proof/bundle/{late}"
    not_in = httpx.get(url, params={"treeSize": held.size}, headers=running.headers)
    assert not_in.status_code == 400, not_in.text
    assert not_in.json()["message"] == f"treeSize: leaf {late[2:]} is not in the tree of size {held.size}"
    no_head = httpx.get(url, params={"treeSize": 2**40}, headers=running.headers)
    assert no_head.status_code == 404 and no_head.json()["message"] == f"no signed tree head of size {2**40}"
    for wrong in ("0", "-1", "x", str(2**62 + 1)):
        bad = httpx.get(url, params={"treeSize": wrong}, headers=running.headers)
        assert bad.status_code == 400 and bad.json()["message"].startswith("treeSize: "), bad.text
    not_asked = _proof(running, late, "--tree-size", str(held.size))
    assert not_asked.returncode == 1 and "is not in the tree of size" in not_asked.stderr
    wrong_size = _proof(running, late, "--tree-size", "0")
    assert wrong_size.returncode == 2 and "--tree-size: must be a tree size" in wrong_size.stderr


def _proof(running: Running, anchor: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``trueup proof ANCHOR`` against the server."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "trueup.cli.main",
            "proof",
            anchor,
            "--url",
            running.url,
            "--api-key",
            running.key,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _offline_verify(bundle: Path, key: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``trueup verify`` and check it loaded nothing beyond stdlib, cryptography, proof."""
    script = (
        "import sys; from trueup.cli.main import main; code = main(sys.argv[1:]);"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('fastapi','starlette','pydantic','httpx','psycopg','orjson','uvicorn','sqlite3') or "
        "(m.startswith('trueup.') and not m.startswith(('trueup.proof','trueup.cli'))));"
        "print('IMPORTED', bad, file=sys.stderr) if bad else None; sys.exit(code if not bad else 3)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "verify", str(bundle), "--key", key, *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 3, done.stderr
    return done


def test_audit_command_passes_on_a_live_log(running: Running) -> None:
    _write_and_wait(running, "audit", 3)
    done = trueup(["audit"], running.data_dir, running.database_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("audit passed")
