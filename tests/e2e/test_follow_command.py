"""``trueup follow``: a monitor's checkpoint file, started from and moved on by the real server
(both backends), left as it was when a check fails (a forged proof from a real HTTP server on
127.0.0.1) or nothing could be checked (no server, a failing one), and one line and an exit
code for each outcome."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.e2e.conftest import Running
from tests.e2e.server import free_port, local_server
from trueup.cli.main import main
from trueup.proof import verify_checkpoint
from trueup.sdk import Client

CUSTOMER = "cli-follow-cust"


@pytest.fixture
def client(running: Running) -> Iterator[Client]:
    with Client(running.url, running.key) as opened:
        yield opened


def _sealed(client: Client, name: str, count: int) -> None:
    """``count`` deltas written and sealed: the log grows by that many leaves."""
    accepted = client.write([{"key": f"{name}-{i}", "accountId": CUSTOMER, "bits": 1} for i in range(count)])
    client.wait_verified(accepted["requestId"])


def _leaves(size: int) -> str:
    return "1 leaf" if size == 1 else f"{size} leaves"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["follow", *argv])
    return code, capsys.readouterr().out


def test_a_monitor_starts_then_sees_the_log_grow_and_holds_the_newer_checkpoint(
    running: Running, client: Client, tmp_path: Path
) -> None:
    key = client.log_key()
    held = tmp_path / "monitor" / "checkpoint"
    argv = [sys.executable, "-m", "trueup.cli.main", "follow", str(held), "--key", key, "--url", running.url]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def follow(*more: str) -> str:
        done = subprocess.run(
            [*argv, *more], capture_output=True, text=True, timeout=60, check=False, env=environment
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    _sealed(client, "start", 1)
    out = follow("--init")
    first = verify_checkpoint(held.read_text(), key)
    assert out == (
        f"OK: following the log from its newest checkpoint, {_leaves(first.size)}, root {first.root.hex()}, "
        f"signed by the pinned key; held in {held}\n"
    )
    assert held.stat().st_mode & 0o777 == 0o600

    _sealed(client, "grown", 3)
    out = follow()
    grown = verify_checkpoint(held.read_text(), key)
    assert grown.size >= first.size + 3
    assert out == (
        f"OK: the log grew from {first.size} to {grown.size} leaves and was only appended to "
        f"(consistency proven), root {grown.root.hex()}, signed by the pinned key; held in {held}\n"
    )
    assert held.read_text() == client.log_checkpoint()  # the server's newest (this module writes alone)

    before = held.read_bytes()
    assert (
        follow()
        == f"OK: the log is as held, {grown.size} leaves, root {grown.root.hex()}, signed by the pinned key\n"
    )
    assert held.read_bytes() == before


def test_a_forged_consistency_proof_fails_and_the_file_stays_as_it_was(
    running: Running, client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = client.log_key()
    _sealed(client, "fork-start", 1)
    held = tmp_path / "checkpoint"
    held.write_text(client.log_checkpoint())
    _sealed(client, "fork-more", 3)
    size = verify_checkpoint(held.read_text(), key).size
    with Client(running.url) as public:
        genuine = public._get("/api/v1/log/proof/consistency", {"from": size})
    assert genuine["proof"], "a proof from a non-empty tree to a larger one has nodes"

    def forking(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        proof = list(genuine["proof"])
        proof[-1] = ("0" if proof[-1][0] != "0" else "1") + proof[-1][1:]  # one node changed
        reply = {"success": True, "data": {**genuine, "proof": proof}}
        return 200, {"Content-Type": "application/json"}, json.dumps(reply).encode()

    before = held.read_bytes()
    with local_server(forking) as url:
        code, out = _run(capsys, str(held), "--key", key, "--url", url)
    assert code == 1, out
    assert out.startswith("FAILED: ") and "\n" not in out[:-1], out
    assert held.read_bytes() == before
    code, out = _run(capsys, str(held), "--key", key, "--url", running.url)  # the genuine server
    assert (code, out.startswith(f"OK: the log grew from {size} to ")) == (0, True), out


@pytest.mark.parametrize(
    ("status", "content_type", "body"),
    [
        (503, "application/json", b'{"success": false, "code": "STORAGE_UNAVAILABLE", "message": "x"}'),
        (502, "text/html", b"<html>bad gateway</html>"),
        (200, "text/html", b"<html>a proxy's login page</html>"),
    ],
)
def test_a_server_that_cannot_answer_checks_nothing_and_the_file_stays(
    client: Client,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    status: int,
    content_type: str,
    body: bytes,
) -> None:
    key = client.log_key()
    held = tmp_path / "checkpoint"
    held.write_text(client.log_checkpoint())
    before = held.read_bytes()

    def failing(request: BaseHTTPRequestHandler, _: bytes) -> tuple[int, dict[str, str], bytes]:
        return status, {"Content-Type": content_type, "Retry-After": "0"}, body

    with local_server(failing) as url:
        code, out = _run(capsys, str(held), "--key", key, "--url", url)
    assert code == 3, out
    assert out.startswith("NOT CHECKED: the server could not be asked: "), out
    code, out = _run(capsys, str(held), "--key", key, "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 3, out
    assert re.match(r"NOT CHECKED: the server could not be asked: ['\"]CONNECTION_ERROR", out), out
    code, out = _run(
        capsys, str(tmp_path / "new"), "--init", "--key", key, "--url", f"http://127.0.0.1:{free_port()}"
    )
    assert code == 3, out
    assert held.read_bytes() == before and not (tmp_path / "new").exists()


def test_the_file_must_hold_a_checkpoint_of_the_pinned_key(
    running: Running, client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2, before any request, for a file that cannot be followed from: a path typed wrong
    never restarts a monitor from scratch, and --init never writes over a file."""
    key = client.log_key()
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: none of these asks the server
    (tmp_path / "garbled").write_text("not a checkpoint\n")
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "huge").write_bytes(b"x" * 70_000)
    other_log = client.log_checkpoint().replace("\u2014 ", "\u2014 x", 1)  # its signature line renamed
    (tmp_path / "other").write_text(other_log)
    cases = {
        "missing": r"missing does not exist: --init creates it from the server's newest checkpoint$",
        "garbled": r"garbled holds no checkpoint signed by the pinned key: ",
        "binary": r"binary holds no checkpoint signed by the pinned key: ",
        "huge": r"huge is larger than a checkpoint can be \(65536 bytes\)$",
        "other": r"other holds no checkpoint signed by the pinned key: ",
        ".": r"cannot read .*: \[Errno 21\] Is a directory",
    }
    for name, problem in cases.items():
        code, out = _run(capsys, str(tmp_path / name), "--key", key, "--url", url)
        assert code == 2, (name, out)
        assert out.startswith("trueup follow: ") and re.search(problem, out.strip()), (name, out)
    held = tmp_path / "held"
    held.write_text(client.log_checkpoint())
    code, out = _run(capsys, str(held), "--init", "--key", key, "--url", running.url)
    assert (code, out) == (2, f"trueup follow: {held} exists already: follow from it without --init\n")
    code, out = _run(capsys, str(held), "--key", "  ", "--url", running.url)
    assert code == 2 and "--key is empty" in out, out
