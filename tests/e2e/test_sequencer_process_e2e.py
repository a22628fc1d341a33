"""``trueup serve`` runs the sequencer as its child process: started, restarted and stopped
with the server, gone by itself when the server is killed outright."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import (
    ServerProcess,
    alive,
    children,
    create_key,
    trueup,
    wait_until,
    write_and_wait_verified,
)
from trueup.cli.child import SequencerProcess


def _sequencer_child(server: ServerProcess) -> int:
    assert server.process is not None
    wait_until(lambda: len(children(server.process.pid, "sequencer")) == 1)  # type: ignore[union-attr]
    [child] = children(server.process.pid, "sequencer")
    return child


def _role(server: ServerProcess) -> str:
    role: str = httpx.get(f"{server.base_url}/readyz").json()["data"]["sequencer"]
    return role


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process parents from /proc")
def test_the_sequencer_child_is_restarted_and_dies_with_a_killed_server(tmp_path: Path) -> None:
    key = create_key(tmp_path, None)
    server = ServerProcess(tmp_path, None).start()
    try:
        child = _sequencer_child(server)
        wait_until(lambda: _role(server) == "leader")
        write_and_wait_verified(server, key, "first")

        os.kill(child, signal.SIGKILL)  # the child dies: the server starts another one
        wait_until(lambda: children(server.process.pid, "sequencer") not in ([], [child]))  # type: ignore[union-attr]
        wait_until(lambda: _role(server) == "leader")
        write_and_wait_verified(server, key, "after-restart")

        replacement = _sequencer_child(server)
        server.kill()  # SIGKILL: the server cannot stop its child; the child notices
        wait_until(lambda: not alive(replacement))
    finally:
        server.kill()

    with ServerProcess(tmp_path, None) as again:  # the role is free again at once
        wait_until(lambda: _role(again) == "leader")
        write_and_wait_verified(again, key, "second-life")
        again.stop()
    audit = trueup(["audit"], tmp_path, None)
    assert audit.returncode == 0, audit.stderr
    assert "30 leaves" in audit.stdout


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process parents from /proc")
def test_a_stopped_sequencer_child_is_reported_down_not_leader(tmp_path: Path) -> None:
    # A child stopped (SIGSTOP, a debugger) seals nothing and cannot report; /readyz said
    # "leader" for as long as it was stopped, and beside the process that took the role over
    # once the stopped one's lock had gone, two processes said "leader".
    key = create_key(tmp_path, None)
    with ServerProcess(tmp_path, None) as server:
        child = _sequencer_child(server)
        wait_until(lambda: _role(server) == "leader")
        os.kill(child, signal.SIGSTOP)
        try:
            wait_until(lambda: _role(server) == "down", timeout_s=30)
        finally:
            os.kill(child, signal.SIGCONT)
        wait_until(lambda: _role(server) == "leader", timeout_s=30)
        write_and_wait_verified(server, key, "woken")


def test_a_stopped_server_stops_its_sequencer_child(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, None).start()
    child = _sequencer_child(server)
    server.stop()  # SIGTERM
    assert not alive(child)
    assert "the sequencer process exited" not in server.log()  # stopped, not restarted


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process parents from /proc")
def test_a_service_manager_s_sigterm_to_every_process_stops_the_server_without_a_restart(
    tmp_path: Path,
) -> None:
    # A service manager stops a service by sending SIGTERM to each of its processes; the child
    # stopped first, and the server logged an ERROR that it exited and went to start another.
    key = create_key(tmp_path, None)
    server = ServerProcess(tmp_path, None).start()
    try:
        child = _sequencer_child(server)
        wait_until(lambda: _role(server) == "leader")
        write_and_wait_verified(server, key, "before")
        os.kill(child, signal.SIGTERM)
        assert alive(child)
        write_and_wait_verified(server, key, "still-sealed")  # it ignores the signal, and seals
        server.stop()  # SIGTERM to the server, which stops its child
    finally:
        server.kill()
    assert not alive(child)
    assert "the sequencer process exited" not in server.log()
    assert "trueup serve is gone" not in server.log()  # told to stop, not left behind


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "2", "--sequencer", "process"], "stand by for the sequencer role"),
        (["--no-sequencer", "--sequencer", "thread"], "contradicts"),
    ],
)
def test_contradictory_sequencer_options_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    done = trueup(["serve", "--port", "1", *args], tmp_path, None)
    assert done.returncode == 2
    assert message in done.stderr


def test_the_thread_sequencer_runs_inside_the_server(tmp_path: Path) -> None:
    key = create_key(tmp_path, None)
    with ServerProcess(tmp_path, None, extra_args=["--sequencer", "thread"]) as server:
        assert server.process is not None
        assert children(server.process.pid) == []
        wait_until(lambda: _role(server) == "leader")
        write_and_wait_verified(server, key, "in-thread")


def test_a_sequencer_that_cannot_run_is_reported_down_and_retried(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("the data directory is a file: the child fails at start")
    child = SequencerProcess(blocked, None, restart_pause_s=0.05)
    child.start()
    try:
        wait_until(lambda: child.starts >= 3 and child.role == "down")
    finally:
        child.stop()
    assert child.pid is not None and not alive(child.pid)


def test_a_sequencer_child_not_heard_from_yet_is_reported_down_not_standby(tmp_path: Path) -> None:
    # Before its first report the child seals nothing (it is still starting, or hangs opening
    # the database), yet /readyz said "standby", as if another process led, for as long as it
    # said nothing: a server alone on its database showed no process down and none leading.
    child = SequencerProcess(tmp_path, None)
    child._command = [sys.executable, "-c", "import time; time.sleep(60)"]  # runs, says nothing
    child.start()
    try:
        wait_until(lambda: child.pid is not None)
        assert child.role == "down"
        time.sleep(SequencerProcess.SILENT_S + 0.5)
        assert child.role == "down"
    finally:
        child.stop()


def test_a_sequencer_that_cannot_even_be_started_is_retried(tmp_path: Path) -> None:
    child = SequencerProcess(tmp_path, None, restart_pause_s=0.05)
    child._command = [str(tmp_path / "no-such-interpreter")]  # Popen raises OSError
    child.start()
    try:
        wait_until(lambda: child.role == "down")
        assert child._thread.is_alive()  # still supervising: it retries after the pause
    finally:
        child.stop()
    assert not child._thread.is_alive()


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_a_full_batch_is_sealed_at_once_not_at_the_next_interval(tmp_path: Path, mode: str) -> None:
    """DESIGN.md §3: seal every interval or as soon as a full batch is queued, whichever first.
    With a ten-minute interval only the full-batch wake-up can seal these writes."""
    key = create_key(tmp_path, None)
    slow = {"TRUEUP_SEAL_INTERVAL_MS": "600000", "TRUEUP_SEAL_BATCH_SIZE": "5"}
    with ServerProcess(tmp_path, None, extra_env=slow, extra_args=["--sequencer", mode]) as server:
        wait_until(lambda: _role(server) == "leader")
        write_and_wait_verified(server, key, "first")  # 10 items: at least one full batch
        write_and_wait_verified(server, key, "second")  # sealed only if the wake-up works


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_a_sequencer_that_holds_the_role_but_cannot_extend_the_log_is_reported_down(
    tmp_path: Path, mode: str
) -> None:
    """The newest head's root edited in the database: it fails its signature, so the log
    cannot be extended. /readyz said "standby", as if another process sealed, while writes
    piled up unsealed; it says "down", and the server's log says why, once with a traceback."""
    key = create_key(tmp_path, None)
    with ServerProcess(tmp_path, None, extra_args=["--sequencer", mode]) as server:
        write_and_wait_verified(server, key, "first")
    with sqlite3.connect(tmp_path / "trueup.db") as database:
        database.execute(
            "UPDATE tree_heads SET root_hash = ? WHERE tree_size = (SELECT MAX(tree_size) FROM tree_heads)",
            (b"\x00" * 32,),
        )
    database.close()
    with ServerProcess(tmp_path, None, extra_args=["--sequencer", mode]) as server:
        wait_until(lambda: "sequencer lead failed again (3 in a row)" in server.log())
        assert _role(server) == "down"
        assert server.log().count("Traceback") == 1
