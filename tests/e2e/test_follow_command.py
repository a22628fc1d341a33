"""``trueup follow``: a monitor's checkpoint file, started from and moved on by the real server
(both backends); left as it was, with the server's newest signed checkpoint kept beside it, when
a check fails (forged proofs, a fork signed with the log's own key, a log cut back, from a real
HTTP server on 127.0.0.1); left as it was when nothing could be checked (no server, a failing
one, one too slow, another run on the file); one line and an exit code for each outcome."""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.e2e.conftest import Running
from tests.e2e.server import free_port, local_server
from trueup.cli.main import main
from trueup.proof import TreeHead, parse_verifier_key, verify_checkpoint
from trueup.proof.checkpoint import CheckpointSigner
from trueup.sdk import Client
from trueup.service.signing import load_signer

CUSTOMER = "cli-follow-cust"
Handler = Callable[[BaseHTTPRequestHandler, bytes], tuple[int, dict[str, str], bytes]]


@pytest.fixture
def client(running: Running) -> Iterator[Client]:
    with Client(running.url, running.key) as opened:
        yield opened


_WRITES = itertools.count()


def _sealed(client: Client, name: str, count: int) -> None:
    """``count`` new deltas written and sealed: the log grows by that many leaves (each key is
    new: the same key again would be stored once)."""
    n = next(_WRITES)
    accepted = client.write(
        [{"key": f"{name}-{n}-{i}", "accountId": CUSTOMER, "bits": 1} for i in range(count)]
    )
    client.wait_verified(accepted["requestId"])


def _leaves(size: int) -> str:
    return "1 leaf" if size == 1 else f"{size} leaves"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["follow", *argv])
    return code, capsys.readouterr().out


def _json(data: object, status: int = 200) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(data).encode()


def _routes(consistency: Handler, checkpoint: str) -> Handler:
    """A server answering the consistency proof with ``consistency`` and the newest checkpoint
    with ``checkpoint``, as Trueup's routes do."""

    def answer(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if request.path.startswith("/api/v1/log/proof/consistency"):
            return consistency(request, body)
        return 200, {"Content-Type": "text/plain; charset=utf-8"}, checkpoint.encode()

    return answer


def test_a_monitor_starts_then_sees_the_log_grow_and_holds_the_newer_checkpoint(
    running: Running, client: Client, tmp_path: Path
) -> None:
    key = client.log_key()
    (tmp_path / "monitor").mkdir()
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
    expected = (
        f"OK: the log is as held, {grown.size} leaves, root {grown.root.hex()}, signed by the pinned key\n"
    )
    assert follow() == expected
    assert held.read_bytes() == before
    assert sorted(p.name for p in held.parent.iterdir()) == [".checkpoint.lock", "checkpoint"]


@pytest.fixture
def held(client: Client, tmp_path: Path) -> tuple[Path, str, TreeHead]:
    """A checkpoint file held by the monitor, then the log grown past it: ``(file, key, head)``."""
    key = client.log_key()
    _sealed(client, "held", 1)
    path = tmp_path / "checkpoint"
    path.write_text(client.log_checkpoint())
    _sealed(client, "past-held", 3)
    return path, key, verify_checkpoint(path.read_text(), key)


def _forged_signer(running: Running, key: str) -> CheckpointSigner:
    """The log's own signing key, as a server that turned against its clients would use it."""
    return load_signer(running.data_dir / "signing-key.pem", parse_verifier_key(key).name)


def test_a_forged_consistency_proof_fails_and_the_file_stays_as_it_was(
    running: Running, client: Client, held: tuple[Path, str, TreeHead], capsys: pytest.CaptureFixture[str]
) -> None:
    path, key, head = held
    with Client(running.url) as public:
        genuine = public._get("/api/v1/log/proof/consistency", {"from": head.size})
    assert genuine["proof"], "a proof from a non-empty tree to a larger one has nodes"

    def forging(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        proof = list(genuine["proof"])
        proof[-1] = ("0" if proof[-1][0] != "0" else "1") + proof[-1][1:]  # one node changed
        return _json({"success": True, "data": {**genuine, "proof": proof}})

    before = path.read_bytes()
    with local_server(_routes(forging, genuine["checkpoint"])) as url:
        code, out = _run(capsys, str(path), "--key", key, "--url", url)
    assert code == 1, out
    rejected = path.with_name("checkpoint.rejected")
    assert out.startswith("FAILED: ") and out.count("\n") == 1, out
    assert out.endswith(f"; the checkpoint it rejected is kept in {rejected}\n")
    assert path.read_bytes() == before
    assert rejected.read_text() == genuine["checkpoint"]  # signed, but not proven to extend the held one
    code, out = _run(capsys, str(path), "--key", key, "--url", running.url)  # the genuine server
    assert (code, out.startswith(f"OK: the log grew from {head.size} to ")) == (0, True), out


def test_a_fork_signed_with_the_log_s_own_key_fails_and_is_kept_as_evidence(
    running: Running, client: Client, held: tuple[Path, str, TreeHead], capsys: pytest.CaptureFixture[str]
) -> None:
    """The server signs a larger tree of another history: its signature verifies, its proof
    cannot, and the two signed checkpoints are what a third party can check."""
    path, key, head = held
    with Client(running.url) as public:
        genuine = public._get("/api/v1/log/proof/consistency", {"from": head.size})
    newest = verify_checkpoint(genuine["checkpoint"], key)
    signer = _forged_signer(running, key)
    fork = signer.sign(signer.name, TreeHead(newest.size, b"\x5a" * 32, newest.timestamp_ms))
    verify_checkpoint(fork, key)  # signed by the log's key: only the proof can tell

    def forking(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return _json({"success": True, "data": {**genuine, "checkpoint": fork, "toRoot": "5a" * 32}})

    before = path.read_bytes()
    rejected = path.with_name("checkpoint.rejected")
    # The fork comes with the proof; the newest checkpoint asked for alone is the honest one.
    with local_server(_routes(forking, genuine["checkpoint"])) as url:
        code, out = _run(capsys, str(path), "--key", key, "--url", url)
        assert (code, out.endswith(f"; the checkpoint it rejected is kept in {rejected}\n")) == (1, True), out
        assert rejected.read_text() == fork
        code, out = _run(capsys, str(path), "--key", key, "--url", url)  # the next run: kept once
        assert out.endswith(f"; the checkpoint it rejected is kept in {rejected} (since an earlier run)\n"), (
            out
        )

    def garbling(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return _json({"success": True, "data": {**genuine, "proof": ["00" * 32]}})

    with local_server(_routes(garbling, genuine["checkpoint"])) as url:  # another rejection
        code, out = _run(capsys, str(path), "--key", key, "--url", url)
    assert (code, out.endswith(f"; the checkpoint it rejected is kept in {rejected}.2\n")) == (1, True), out
    assert rejected.read_text() == fork, "evidence is never written over"
    assert path.with_name("checkpoint.rejected.2").read_text() == genuine["checkpoint"]
    assert path.read_bytes() == before


@pytest.mark.parametrize("how", ["smaller", "rewritten at the same size", "restored and grown past it"])
def test_a_log_cut_back_or_rewritten_fails(
    running: Running,
    client: Client,
    held: tuple[Path, str, TreeHead],
    capsys: pytest.CaptureFixture[str],
    how: str,
) -> None:
    """The server gives no proof from the size held (a 404), and a newest checkpoint signed by
    the log's key that is smaller than the one held, as large with another root, or larger (the
    log keeps every head it signed: one restored from an earlier copy and grown again has not
    the head held)."""
    path, key, head = held
    signer = _forged_signer(running, key)
    size = {"smaller": head.size - 1, "rewritten at the same size": head.size}.get(how, head.size + 3)
    cut = signer.sign(signer.name, TreeHead(size, b"\x33" * 32, head.timestamp_ms + 1))

    def no_proof(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return _json(
            {"success": False, "code": "NOT_FOUND", "message": f"no signed tree head of size {head.size}"},
            404,
        )

    before = path.read_bytes()
    with local_server(_routes(no_proof, cut)) as url:
        code, out = _run(capsys, str(path), "--key", key, "--url", url)
    assert code == 1, out
    assert out.startswith("FAILED: ") and out.endswith(f"is kept in {path}.rejected\n"), out
    assert path.read_bytes() == before
    assert path.with_name("checkpoint.rejected").read_text() == cut


def test_only_the_pinned_key_s_signature_is_kept(
    running: Running, client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Signatures by other keys are not checked, so a note padded with one (90 KB) is kept
    without it: the file never fills up to where it can no longer be followed from."""
    key = client.log_key()
    genuine = client.log_checkpoint()
    padded = genuine + "\u2014 other.example " + "A" * 90_000 + "\n"
    verify_checkpoint(padded, key)  # still a note the pinned key verifies
    path = tmp_path / "checkpoint"
    with local_server(_routes(lambda request, body: _json({}, 500), padded)) as url:
        code, out = _run(capsys, str(path), "--init", "--key", key, "--url", url)
    assert code == 0, out
    assert path.read_text() == genuine


@pytest.mark.parametrize(
    ("status", "content_type", "body"),
    [
        (503, "application/json", b'{"success": false, "code": "STORAGE_UNAVAILABLE", "message": "x"}'),
        (502, "text/html", b"<html>bad gateway</html>"),
        (200, "text/html", b"<html>a proxy's login page</html>"),
        (
            200,
            "application/json",
            b'{"success": true, "data": {"proof": [], "pad": "' + b"x" * 2_000_000 + b'"}}',
        ),
    ],
    ids=["503", "a proxy's 502", "a proxy's 200", "a reply longer than any of the server's"],
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
    assert held.read_bytes() == before


def test_no_server_checks_nothing_and_the_file_stays(
    client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = client.log_key()
    held = tmp_path / "checkpoint"
    held.write_text(client.log_checkpoint())
    before = held.read_bytes()
    code, out = _run(capsys, str(held), "--key", key, "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 3, out
    assert re.match(r"NOT CHECKED: the server could not be asked: ['\"]CONNECTION_ERROR", out), out
    new = tmp_path / "new"
    code, out = _run(capsys, str(new), "--init", "--key", key, "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 3, out
    assert held.read_bytes() == before and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".checkpoint.lock", ".new.lock", "checkpoint"]


def test_a_refusal_the_server_names_bad_reply_is_still_a_refusal(
    client: Client, held: tuple[Path, str, TreeHead], capsys: pytest.CaptureFixture[str]
) -> None:
    """Whether a reply is the server's is the client's reading, not a code the reply names."""
    path, key, _ = held

    def naming(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return _json({"success": False, "code": "BAD_REPLY", "message": "not me"}, 403)

    with local_server(naming) as url:
        code, out = _run(capsys, str(path), "--key", key, "--url", url)
    assert code == 1, out
    assert out.startswith("FAILED: the server refused: '403 BAD_REPLY: not me'"), out


def test_a_json_object_with_no_checkpoint_in_a_200_fails_and_is_no_refusal(
    client: Client, held: tuple[Path, str, TreeHead], capsys: pytest.CaptureFixture[str]
) -> None:
    path, key, _ = held

    def hollow(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return _json({"success": True, "data": "x"}, 200)

    with local_server(hollow) as url:
        code, out = _run(capsys, str(path), "--key", key, "--url", url)
    assert code == 1, out
    assert out.startswith("FAILED: the server did not give what was asked: '200 BAD_REPLY: "), out


def test_a_server_too_slow_and_another_run_on_the_file_check_nothing(
    running: Running, held: tuple[Path, str, TreeHead], capsys: pytest.CaptureFixture[str]
) -> None:
    """--timeout bounds the whole run: a server that answers a byte at a time, or never, and a
    wait for another run on the file (runs take turns, so two cannot each accept a history)."""
    path, key, head = held
    release = threading.Event()

    def stalling(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        release.wait(30)
        return _json({})

    before = path.read_bytes()
    with local_server(stalling) as url:
        code, out = _run(capsys, str(path), "--key", key, "--url", url, "--timeout", "0.5")
        release.set()
    waited = f"the server's replies, or another run on {path}"
    assert (code, out) == (3, f"NOT CHECKED: the run took more than --timeout 0.5 s ({waited})\n")
    assert path.read_bytes() == before

    lock = os.open(path.with_name(".checkpoint.lock"), os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run holds the file
        code, out = _run(capsys, str(path), "--key", key, "--url", running.url, "--timeout", "0.5")
        assert code == 3 and out.startswith("NOT CHECKED: the run took more than --timeout 0.5 s"), out
        assert path.read_bytes() == before
    finally:
        os.close(lock)
    code, out = _run(capsys, str(path), "--key", key, "--url", running.url)  # its turn now
    assert (code, out.startswith(f"OK: the log grew from {head.size} to ")) == (0, True), out


def test_a_link_s_target_is_moved_on_with_its_mode_and_a_hand_made_file_is_read(
    running: Running, held: tuple[Path, str, TreeHead], capsys: pytest.CaptureFixture[str]
) -> None:
    """A file behind a link is the one moved on (the link stays a link), its mode is kept, and
    a byte order mark and Windows line ends, as an editor may save them, are not the note's."""
    path, key, head = held
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    path.chmod(0o644)
    link = path.with_name("link")
    link.symlink_to(path.name)
    code, out = _run(capsys, str(link), "--key", key, "--url", running.url)
    assert (code, out.startswith(f"OK: the log grew from {head.size} to ")) == (0, True), out
    assert link.is_symlink() and link.readlink() == Path(path.name)
    assert verify_checkpoint(path.read_text(), key).size > head.size
    assert path.stat().st_mode & 0o777 == 0o644


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
    (tmp_path / "dir").mkdir()
    cases = {
        "missing": r"missing does not exist: --init creates it from the server's newest checkpoint$",
        "garbled": r"garbled holds no checkpoint signed by the pinned key: ",
        "binary": r"binary holds no checkpoint signed by the pinned key: ",
        "huge": r"huge is longer than a checkpoint can be \(65536 bytes\)$",
        "other": r"other holds no checkpoint signed by the pinned key: ",
        "dir": r"cannot read .*dir: \[Errno 21\] Is a directory",
    }
    for name, problem in cases.items():
        code, out = _run(capsys, str(tmp_path / name), "--key", key, "--url", url)
        assert code == 2, (name, out)
        assert out.startswith("trueup follow: ") and re.search(problem, out.strip()), (name, out)
    held = tmp_path / "held"
    held.write_text(client.log_checkpoint())
    code, out = _run(capsys, str(held), "--init", "--key", key, "--url", running.url)
    assert (code, out) == (2, f"trueup follow: {held} exists already: follow from it without --init\n")
    dangling = tmp_path / "dangling"
    dangling.symlink_to("nowhere")
    code, out = _run(capsys, str(dangling), "--init", "--key", key, "--url", running.url)
    assert (code, out) == (2, f"trueup follow: {dangling} exists already: follow from it without --init\n")
    typo = tmp_path / "no-such-dir" / "checkpoint"
    code, out = _run(capsys, str(typo), "--init", "--key", key, "--url", running.url)
    assert (code, out) == (2, f"trueup follow: no directory {typo.parent} for checkpoint\n")
    assert not typo.parent.exists()


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--url", "http://[::1"], r"--url 'http://\[::1' is not a server URL"),
        (["--url", "ftp://127.0.0.1/"], r"--url 'ftp://127\.0\.0\.1/' is not a server URL"),
        (["--url", "notaurl"], r"--url 'notaurl' is not a server URL"),
        (["--url", ""], r"--url '' is not a server URL"),
        (["--timeout", "0"], r"--timeout must be more than 0 and at most 86400 seconds, got 0\.0$"),
        (["--timeout", "nan"], r"--timeout must be more than 0 and at most 86400 seconds, got nan$"),
        (["--key", "  "], r"--key is empty"),
    ],
)
def test_a_wrong_argument_is_exit_2_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], problem: str
) -> None:
    key = "localhost/trueup+8792bbd9+AdPqkE5LSMCBuhYr2bdf8Kbsbmr2WpU0GKDl5zOeZ4dQ"  # never used: no request
    code, out = _run(capsys, str(tmp_path / "checkpoint"), "--init", "--key", key, *args)
    assert code == 2, out
    assert out.startswith("trueup follow: ") and re.search(problem, out.strip()), out
    assert list(tmp_path.iterdir()) == []


def test_a_caller_s_timer_is_set_again_and_another_thread_runs_without_one(
    running: Running, held: tuple[Path, str, TreeHead], capsys: pytest.CaptureFixture[str]
) -> None:
    """The deadline is a timer signal of the main thread: a timer the caller had set is set
    again afterwards with its handler, and ``main()`` called from another thread runs without
    one (bounded by the client's timeout for each step)."""
    path, key, _ = held
    fired: list[int] = []

    def recorder(signum: int, frame: object) -> None:
        fired.append(signum)

    previous = signal.signal(signal.SIGALRM, recorder)
    try:
        signal.setitimer(signal.ITIMER_REAL, 100)
        code, out = _run(capsys, str(path), "--key", key, "--url", running.url)
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert code == 0, out
        assert 50 < left <= 100 and fired == []
        assert signal.getsignal(signal.SIGALRM) is recorder  # the caller's own handler, kept
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    outcome: list[int] = []
    thread = threading.Thread(
        target=lambda: outcome.append(main(["follow", str(path), "--key", key, "--url", running.url]))
    )
    thread.start()
    thread.join(60)
    assert outcome == [0], capsys.readouterr().out
