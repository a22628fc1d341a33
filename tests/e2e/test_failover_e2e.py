"""Several API processes on one database: one sequencer leads, another takes over; SQLite
workers take turns writing."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.conftest import fresh_pg_schema
from tests.e2e.server import ServerProcess, create_key, free_port, trueup, wait_until
from trueup.api.stopping import CUT_OFF_MESSAGE
from trueup.bench.server import child_pids
from trueup.cli.workers import MEMORY_FILE_SYSTEM, WORKER_STOP_GRACE_S


def _role(server: ServerProcess) -> str:
    role: str = httpx.get(f"{server.base_url}/readyz").json()["data"]["sequencer"]
    return role


def _write(server: ServerProcess, key: str, prefix: str, count: int) -> str:
    reply = httpx.post(
        f"{server.base_url}/api/v1/writes",
        headers={"X-Api-Key": key},
        json={
            "items": [{"key": f"{prefix}-{i}", "accountId": f"c{i % 5}", "bits": i + 1} for i in range(count)]
        },
    )
    assert reply.status_code == 202, reply.text
    request_id: str = reply.json()["data"]["requestId"]
    return request_id


def _verified(server: ServerProcess, key: str, request_id: str) -> bool:
    reply = httpx.get(f"{server.base_url}/api/v1/writes/{request_id}", headers={"X-Api-Key": key})
    return bool(reply.json()["data"]["status"] == "verified")


def test_the_standby_sequencer_takes_over_when_the_leader_is_killed(tmp_path: Path) -> None:
    with fresh_pg_schema() as url:
        key = create_key(tmp_path, url)
        first = ServerProcess(tmp_path, url).start()
        try:
            wait_until(lambda: _role(first) == "leader")
            with ServerProcess(tmp_path, url) as second:
                wait_until(lambda: _role(second) == "standby")  # "down" until its child reports
                before = _write(second, key, "before", 50)
                wait_until(lambda: _verified(second, key, before))
                first.kill()
                during = [_write(second, key, f"during-{n}", 20) for n in range(5)]
                # The standby polls the advisory lock every second (a takeover within 5 s at most).
                wait_until(lambda: _role(second) == "leader", timeout_s=30)
                wait_until(lambda: all(_verified(second, key, r) for r in during), timeout_s=30)
                audit = trueup(["audit"], tmp_path, url)
                assert audit.returncode == 0, audit.stderr
                assert "150 leaves" in audit.stdout
        finally:
            first.kill()


def test_serve_with_workers_answers_and_elects_one_sequencer(tmp_path: Path) -> None:
    with fresh_pg_schema() as url:
        key = create_key(tmp_path, url)
        workers = ["--workers", "2", "--log-level", "info"]
        with ServerProcess(tmp_path, url, extra_args=workers) as server:
            request_id = _write(server, key, "workers", 10)
            wait_until(lambda: _verified(server, key, request_id))
            # The spawned workers log at the level serve was given (they used to log nothing).
            wait_until(lambda: server.log().count("this process holds the dispatcher role") == 1)
            assert server.log().count("this process holds the sequencer role") == 1
        audit = trueup(["audit"], tmp_path, url)
        assert audit.returncode == 0, audit.stderr


def test_serve_with_workers_on_sqlite_takes_concurrent_writes_and_seals_them_all(tmp_path: Path) -> None:
    # Each worker has its own group committer; they take turns on the SQLite file's writer lock.
    key = create_key(tmp_path, None)
    with ServerProcess(tmp_path, None, extra_args=["--workers", "2"]) as server:
        with ThreadPoolExecutor(max_workers=8) as pool:
            requests = list(pool.map(lambda n: _write(server, key, f"w{n}", 25), range(16)))
        wait_until(lambda: all(_verified(server, key, r) for r in requests), timeout_s=30)
    audit = trueup(["audit"], tmp_path, None)
    assert audit.returncode == 0, audit.stderr
    assert "400 leaves" in audit.stdout


def test_workers_that_start_slowly_are_not_killed_as_hung(tmp_path: Path) -> None:
    """uvicorn's supervisor of ``--workers`` killed a worker that had not answered its health
    check 5 s after it started, as hung: on a busy machine a worker's interpreter took that long
    just to import the server, so each was killed and started again, and nothing was served.
    Here every worker takes 7 s before its interpreter runs anything (a ``sitecustomize`` that
    sleeps in the spawned processes only), as a machine under load does."""
    slow = tmp_path / "slow-start"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(
        "import sys, time\nif '--multiprocessing-fork' in sys.argv:\n    time.sleep(7)\n"
    )
    path = os.pathsep.join(filter(None, [str(slow), os.environ.get("PYTHONPATH")]))
    key = create_key(tmp_path, None)
    server = ServerProcess(tmp_path, None, extra_args=["--workers", "2"], extra_env={"PYTHONPATH": path})
    with server:
        request = _write(server, key, "slow", 3)
        wait_until(lambda: _verified(server, key, request), timeout_s=30)
    assert "died" not in server.log(), server.log()


def test_serve_without_sequencer_beside_a_sequencer_process_on_sqlite(tmp_path: Path) -> None:
    key = create_key(tmp_path, None)
    port = free_port()
    with (tmp_path / "sequencer.log").open("wb") as log:  # the child keeps its own descriptor
        sequencer = subprocess.Popen(
            [
                *(sys.executable, "-m", "trueup.cli.main", "sequencer", "--data-dir", str(tmp_path)),
                *("--metrics-port", str(port)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        with ServerProcess(tmp_path, None, extra_args=["--no-sequencer"]) as server:
            assert _role(server) == "off"
            requests = [_write(server, key, f"split{n}", 30) for n in range(4)]
            wait_until(lambda: all(_verified(server, key, r) for r in requests), timeout_s=30)
            # the seals are counted by the sequencer that made them, on its own port (the API
            # server made none)
            scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            assert "trueup_sealed_leaves_total 120.0" in scraped, scraped
            assert "trueup_tree_size 120.0" in scraped
            assert 'trueup_role_held{role="sequencer"} 1.0' in scraped  # read at the scrape
            assert "trueup_sealed_leaves_total 0.0" in httpx.get(f"{server.base_url}/metrics").text
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").content == b'{"status":"ok"}'  # as the API's
            # /readyz of the API-only server says a sequencer leads elsewhere, and when none does
            assert _ready(server)["sequencerElected"] is True
            assert _ready(server)["dispatcherElected"] is True  # its own
            sequencer.terminate()
            sequencer.wait(timeout=30)
            said = (tmp_path / "sequencer.log").read_text()
            assert "INFO trueup.cli.sequencer: asked to stop (SIGTERM); stopping" in said, said
            assert said.rstrip().endswith("INFO trueup.cli.sequencer: stopped"), said
            assert _ready(server)["sequencerElected"] is False
            assert 'trueup_role_held{role="sequencer"} 0.0' in httpx.get(f"{server.base_url}/metrics").text
    finally:
        if sequencer.poll() is None:
            sequencer.terminate()
            sequencer.wait(timeout=30)
    audit = trueup(["audit"], tmp_path, None)
    assert audit.returncode == 0, audit.stderr
    assert "120 leaves" in audit.stdout


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _workers(master: int) -> list[int]:
    """The uvicorn workers among ``master``'s children (multiprocessing spawns them)."""
    found = []
    for pid in child_pids(master):
        try:
            if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text():
                found.append(pid)
        except OSError:  # gone meanwhile
            continue
    return found


def test_workers_stop_when_their_serve_process_is_killed(tmp_path: Path) -> None:
    # uvicorn's workers do not watch their supervisor: killed outright, it left them serving on
    # its port, where a restarted `serve --workers` could not listen (Address already in use).
    key = create_key(tmp_path, None)
    server = ServerProcess(tmp_path, None, extra_args=["--workers", "2"]).start()
    try:
        assert server.process is not None
        master = server.process.pid
        wait_until(lambda: len(_workers(master)) == 2)
        children = child_pids(master)  # the workers and multiprocessing's resource tracker
        _write(server, key, "orphan", 5)
        server.kill()
        wait_until(lambda: not any(_alive(pid) for pid in children), timeout_s=30)
        # The port is free again: the same deployment starts on it.
        again = ServerProcess(tmp_path, None, extra_args=["--workers", "2"])
        again.port = server.port
        with again:
            assert httpx.get(f"{again.base_url}/healthz").status_code == 200
    finally:
        server.stop()
    assert "is gone; stopping this worker" in server.log()


def test_a_stopping_supervisor_neither_waits_on_nor_replaces_a_stuck_worker(tmp_path: Path) -> None:
    """A worker that cannot stop (here stopped by SIGSTOP; stuck, in life) held uvicorn's
    supervisor: a SIGTERM waited for the worker's health check to give up (30 s), the worker was
    then killed and another started, and a worker that never exits was waited for for ever. The
    supervisor now handles the signal at once, starts no worker, and kills the stuck one once
    its grace is over."""
    server = ServerProcess(tmp_path, None, extra_args=["--workers", "2"]).start()
    stuck = None
    try:
        assert server.process is not None
        master = server.process.pid
        wait_until(lambda: len(_workers(master)) == 2)
        stuck = _workers(master)[0]
        os.kill(stuck, signal.SIGSTOP)
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=60)
    finally:
        server.kill()
        if stuck is not None and _alive(stuck):  # this test's own worker, left stopped on a failure
            os.kill(stuck, signal.SIGKILL)
    assert stuck is not None
    wait_until(lambda: not _alive(stuck), timeout_s=10)
    grace = f"worker [{stuck}] did not stop within {WORKER_STOP_GRACE_S} s of being asked to; killing it"
    assert grace in server.log(), server.log()
    assert "died" not in server.log(), server.log()


def test_a_worker_that_dies_is_said_to_have_died_and_is_replaced(tmp_path: Path) -> None:
    """The supervisor's line said "died or did not answer its health check": which, it now says."""
    with ServerProcess(tmp_path, None, extra_args=["--workers", "2"]) as server:
        assert server.process is not None
        master = server.process.pid
        wait_until(lambda: len(_workers(master)) == 2)
        victim = _workers(master)[0]
        os.kill(victim, signal.SIGKILL)
        said = f"worker [{victim}] died (killed by SIGKILL); starting another"
        wait_until(lambda: said in server.log(), timeout_s=60)
        wait_until(lambda: len(_workers(master)) == 2 and victim not in _workers(master), timeout_s=60)
        assert httpx.get(f"{server.base_url}/healthz").status_code == 200


def test_readyz_says_which_process_delivers_webhooks(tmp_path: Path) -> None:
    """Every server stands by for the dispatcher role unless told not to: then a dispatcher of
    its own (trueup dispatcher, on another host) delivers, and /readyz says off."""
    with ServerProcess(tmp_path, None) as server:
        wait_until(lambda: _ready(server)["dispatcher"] == "leader")
        # ... as the process that answered, named, since with --workers it is one of several
        assert _ready(server)["pid"] == server.process.pid
        assert _ready(server)["host"] == socket.gethostname()
    with ServerProcess(tmp_path, None, extra_args=["--no-dispatcher"]) as server:
        assert _ready(server)["dispatcher"] == "off"
        assert "holds the dispatcher role" not in server.log()


def _ready(server: ServerProcess) -> dict[str, object]:
    data: dict[str, object] = httpx.get(f"{server.base_url}/readyz").json()["data"]
    return data


def test_metrics_of_workers_add_up_whichever_worker_answers(tmp_path: Path) -> None:
    """With --workers each scrape reaches one worker: the figures must be all of them, so a
    counter never seems to go back (which Prometheus takes for a restart)."""
    key = create_key(tmp_path, None)
    where = MEMORY_FILE_SYSTEM if MEMORY_FILE_SYSTEM.is_dir() else tmp_path
    others = set(where.glob("*metrics-*"))  # other servers' (another test's, killed outright)
    with ServerProcess(tmp_path, None, extra_args=["--workers", "2"]) as server:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda n: _write(server, key, f"m{n}", 1), range(24)))
        for _ in range(12):  # scrapes reach one worker or the other
            text = httpx.get(f"{server.base_url}/metrics").text
            assert 'trueup_http_responses_total{route="/api/v1/writes",status="2xx"} 24.0' in text, text
        # In memory where there is a file system there (off the database's disk), else in the
        # data directory; removed when the server stopped.
        [own] = set(where.glob(f"*metrics-{server.port}*")) - others
        assert own.is_dir()
    assert not own.exists()


def test_metrics_in_files_count_each_seal_once(tmp_path: Path) -> None:
    """An operator's PROMETHEUS_MULTIPROC_DIR on a plain serve: its sequencer child reports
    each seal to the server, which counts it; the child must not count it in the files too."""
    key = create_key(tmp_path, None)
    files = tmp_path / "prometheus"
    files.mkdir()
    with ServerProcess(tmp_path, None, extra_env={"PROMETHEUS_MULTIPROC_DIR": str(files)}) as server:
        request = _write(server, key, "once", 30)
        wait_until(lambda: _verified(server, key, request), timeout_s=30)
        text = httpx.get(f"{server.base_url}/metrics").text
    sealed = [line for line in text.splitlines() if line.startswith("trueup_sealed_leaves_total ")]
    assert sealed == ["trueup_sealed_leaves_total 30.0"], sealed
    assert 'trueup_ingest_items_total{source="writes"} 30.0' in text


def test_a_stopping_server_with_workers_refuses_new_connections_at_once(tmp_path: Path) -> None:
    """While its workers finished what was in flight (up to 10 s), `serve --workers` kept its
    copy of the listening socket open: the kernel took new connections that no worker would
    accept, their requests waited unanswered, and they were reset when it exited. A client (or
    a load balancer) should be refused at once and go elsewhere."""
    key = create_key(tmp_path, None)
    with ServerProcess(tmp_path, None, extra_args=["--workers", "2"]) as server:
        assert server.process is not None
        with socket.create_connection(("127.0.0.1", server.port)) as in_flight:
            # A write whose body has not all come: in flight until the graceful shutdown's 10 s end.
            in_flight.sendall(
                b"POST /api/v1/writes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"X-Api-Key: " + key.encode() + b"\r\nContent-Length: 100\r\n\r\n{"
            )
            time.sleep(0.5)  # taken by a worker
            server.process.send_signal(signal.SIGTERM)
            time.sleep(1.0)  # every worker has stopped accepting
            started = time.monotonic()
            with socket.socket() as late:
                late.settimeout(15)
                try:
                    late.connect(("127.0.0.1", server.port))
                    late.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    outcome = f"connected, then {late.recv(100)!r}"
                except OSError as exc:
                    outcome = type(exc).__name__
            assert outcome == "ConnectionRefusedError", (outcome, time.monotonic() - started)
            # The write in flight is cut off when the 10 s end: a 503 that says to retry, not
            # uvicorn's plain-text 500 (and its traceback in the log).
            in_flight.settimeout(15)
            reply = in_flight.recv(4096)
        server.process.wait(timeout=15)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), reply
    assert b"\r\nretry-after: 1\r\n" in head.lower() and b"\r\nconnection: close" in head.lower(), head
    assert json.loads(body)["message"] == CUT_OFF_MESSAGE
    assert "Exception in ASGI application" not in server.log()
    rid = re.search(rb"\r\nx-request-id: ([0-9a-f]{16})\r\n", head)
    assert rid is not None, head
    cut_off = f"POST /api/v1/writes cut off unanswered; answered 503 x-request-id={rid.group(1).decode()}"
    assert cut_off in server.log()
