"""``trueup serve --committer process`` commits write requests in a child process: the commits go
there, the child is restarted when it dies (writes are committed in the server meanwhile),
nothing answered 202 is lost when it is killed mid-commit, and it stops with the server."""

from __future__ import annotations

import fcntl
import logging
import os
import platform
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import termios
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from tests.conftest import pg_disk_full
from tests.e2e.server import ServerProcess, alive, children, create_key, trueup, wait_until
from trueup.cli.committer import (
    _LENGTH,
    BULK_REQUEST_ITEMS,
    LOCAL_FROM_ITEMS,
    CommitInterruptedError,
    CommitterProcess,
    _bulk,
)
from trueup.storage import open_storage
from trueup.storage.errors import StorageFullError, StorageUnavailableError
from trueup.storage.idempotency import IdempotencyClaim, StoredResponse
from trueup.storage.write_drafts import DeltaDraft, WriteDraft, WriteResult

KILLS = 3
WRITERS = 6
IN_A_CHILD = ["--committer", "process"]
_READ_SYSCALL = {"x86_64": "0", "aarch64": "63"}


def _committer(server: ServerProcess) -> str:
    state: str = httpx.get(f"{server.base_url}/readyz").json()["data"]["committer"]
    return state


def _committer_child(server: ServerProcess, other_than: int | None = None) -> int:
    """The server's one committer child, once it is ready (a new one, when ``other_than``
    names the old one)."""
    assert server.process is not None
    pid = server.process.pid
    wait_until(
        lambda: children(pid, "committer") not in ([], [other_than]) and _committer(server) == "process"
    )
    [child] = children(pid, "committer")
    return child


def _write(server: ServerProcess, key: str, keys: list[str], timeout_s: float = 30.0) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/api/v1/writes",
        headers={"X-Api-Key": key},
        json={"items": [{"key": k, "accountId": f"acct-{k.split('-')[1]}", "bits": 3} for k in keys]},
        timeout=timeout_s,
    )


def _verified(server: ServerProcess, key: str, request_id: str) -> bool:
    view = httpx.get(f"{server.base_url}/api/v1/writes/{request_id}", headers={"X-Api-Key": key})
    return view.status_code == 200 and view.json()["data"]["status"] == "verified"


pytestmark = pytest.mark.skipif(
    platform.machine() not in _READ_SYSCALL or not Path("/proc/self/syscall").exists(),
    reason="reads a stopped child's state from /proc (Linux on x86-64 or arm64)",
)


def test_writes_are_committed_by_the_child(tmp_path: Path) -> None:
    key = create_key(tmp_path, None)
    with ServerProcess(tmp_path, None, extra_args=IN_A_CHILD) as server:
        child = _committer_child(server)
        os.kill(child, signal.SIGSTOP)  # the child cannot commit: a write waits for it
        try:
            with ThreadPoolExecutor(1) as pool:
                pending = pool.submit(_write, server, key, ["stopped-1"])
                wait_until(lambda: _unread_request(child))  # the commit was handed to the child
                assert not pending.done()
                os.kill(child, signal.SIGCONT)
                reply = pending.result(timeout=30)
        finally:
            os.kill(child, signal.SIGCONT)
        assert reply.status_code == 202, reply.text
        wait_until(lambda: _verified(server, key, reply.json()["data"]["requestId"]))


def test_a_large_group_is_committed_by_the_server_itself(tmp_path: Path) -> None:
    """A group of LOCAL_FROM_ITEMS items or more does not go to the child: with the child stopped,
    it is committed and sealed all the same, while the next write, one item smaller, waits for the
    child."""
    key = create_key(tmp_path, None)
    with ServerProcess(tmp_path, None, extra_args=IN_A_CHILD) as server:
        child = _committer_child(server)
        os.kill(child, signal.SIGSTOP)
        try:
            large = _write(server, key, [f"large-{n}" for n in range(LOCAL_FROM_ITEMS)])
            assert large.status_code == 202, large.text
            wait_until(lambda: _verified(server, key, large.json()["data"]["requestId"]))
            assert not _unread_request(child)
            with ThreadPoolExecutor(1) as pool:
                smaller = [f"smaller-{n}" for n in range(LOCAL_FROM_ITEMS - 1)]
                small = pool.submit(_write, server, key, smaller)
                wait_until(lambda: _unread_request(child))  # this one was handed to the child
                assert not small.done()
                os.kill(child, signal.SIGCONT)
                assert small.result(timeout=30).status_code == 202
        finally:
            os.kill(child, signal.SIGCONT)


def test_only_groups_of_bulk_requests_stay_in_the_server() -> None:
    """Many small requests go to the child however many items they add up to."""
    many_small = [_draft(f"req-{n}", f"key-{n}") for n in range(2 * LOCAL_FROM_ITEMS)]
    bulk = replace(many_small[0], items=many_small[0].items * BULK_REQUEST_ITEMS)
    assert not _bulk(many_small)
    assert not _bulk([bulk] * (LOCAL_FROM_ITEMS // BULK_REQUEST_ITEMS - 1) + many_small)
    assert _bulk([bulk] * (LOCAL_FROM_ITEMS // BULK_REQUEST_ITEMS) + many_small)


def _unread_request(child: int) -> bool:
    """Whether bytes wait unread in the (stopped) child's stdin: a commit sent to it."""
    fd = os.open(f"/proc/{child}/fd/0", os.O_RDONLY | os.O_NONBLOCK)
    try:
        waiting: int = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    finally:
        os.close(fd)
    return waiting > 0


def _stop_holding_a_commit(child: int, server: ServerProcess, writers: list[Future[None]]) -> None:
    """Stop the child (SIGSTOP) at a moment it waits for its next commit, then wait until the
    server hands it one: killing it then certainly cuts a commit short. A child stopped anywhere
    else (in the middle of a commit, or just after one) is let go on and caught again.

    Should no commit reach the stopped child, the failure says what the child, the writers, the
    server's threads and its log were doing (and their Python stacks, where py-spy is installed)."""

    def stopped_waiting_for_stdin() -> bool:
        os.kill(child, signal.SIGSTOP)
        wait_until(lambda: _state(child) == "T")
        # /proc's "syscall" file: the call the process is in, then its arguments. Only the
        # read of a frame's 4-byte length is a wait for the next commit. A read of a frame's
        # body may already have returned its last bytes (a frame over 4 KiB reaches the pipe
        # in parts): a process stopped on its way out of a call still shows it, and that
        # child, whole frame in hand, waits for no more bytes while the server waits for its
        # reply. Caught there twice (reading the last 1,077 bytes), this test waited in vain.
        fields = Path(f"/proc/{child}/syscall").read_text().split()
        if fields[:2] == [_READ_SYSCALL[platform.machine()], "0x0"] and int(fields[3], 16) == _LENGTH.size:
            return True  # read(0, …, 4)
        os.kill(child, signal.SIGCONT)
        return False

    wait_until(stopped_waiting_for_stdin, interval_s=0.001)
    try:
        wait_until(lambda: _unread_request(child))
    except AssertionError:
        assert server.process is not None
        syscall = Path(f"/proc/{child}/syscall").read_text().strip()
        threads = _thread_syscalls(server.process.pid)
        stacks = _stacks(child, server.process.pid)
        os.kill(child, signal.SIGCONT)
        ready = httpx.get(f"{server.base_url}/readyz", timeout=5).text
        ended = [repr(writer.exception()) for writer in writers if writer.done()]
        raise AssertionError(
            f"no commit reached the stopped committer {child} (syscall {syscall!r}); committers "
            f"now {children(server.process.pid, 'committer')}; /readyz {ready}; writers ended "
            f"{len(ended)} of {len(writers)} {ended}; the server's threads in {threads}; "
            f"{stacks}server log ends:\n{server.log()[-4000:]}"
        ) from None


def _thread_syscalls(pid: int) -> dict[str, str]:
    """What each thread of ``pid`` is in (/proc's syscall: number and arguments; "running")."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found[task.name] = (task / "syscall").read_text().strip()
        except OSError as exc:
            found[task.name] = str(exc)
    return found


def _stacks(*pids: int) -> str:
    """The Python stacks of ``pids``, where py-spy is installed (it is not a dependency)."""
    spy = shutil.which("py-spy")
    if spy is None:
        return ""
    dumps = []
    for pid in pids:
        done = subprocess.run(
            [spy, "dump", "--pid", str(pid), "--nonblocking"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        dumps.append(f"py-spy dump of {pid}:\n{done.stdout}{done.stderr}")
    return "\n".join(dumps) + "\n"


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_a_killed_child_is_replaced_and_writes_go_on_meanwhile(tmp_path: Path) -> None:
    key = create_key(tmp_path, None)
    with ServerProcess(tmp_path, None, extra_args=IN_A_CHILD) as server:
        first = _committer_child(server)
        assert _write(server, key, ["before-1"]).status_code == 202
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: not alive(first))
        wait_until(lambda: _committer(server) == "down")
        # No request was in flight: the writes while no child runs are committed by the server.
        replies = [_write(server, key, [f"between-{i}"]) for i in range(5)]
        assert [r.status_code for r in replies] == [202] * 5, [r.text for r in replies]
        second = _committer_child(server, other_than=first)
        assert second != first
        last = _write(server, key, ["after-1"])
        assert last.status_code == 202, last.text
        wait_until(lambda: _verified(server, key, last.json()["data"]["requestId"]))
        assert "the committer process exited" in server.log()
        server.stop()
    audit = trueup(["audit"], tmp_path, None)
    assert audit.returncode == 0, audit.stderr
    assert "7 leaves" in audit.stdout


def test_no_202_is_lost_when_the_child_is_killed_mid_commit(
    tmp_path: Path, server_database: str | None
) -> None:
    """Writers keep sending while the committer child is killed three times. Every write
    answered 202 is stored; the others were answered 503 and, retried with the same keys, store
    each delta exactly once."""
    key = create_key(tmp_path, server_database)
    stop = threading.Event()
    answered: dict[str, int] = {}  # first key of each request -> status
    sent: dict[str, list[str]] = {}
    lock = threading.Lock()

    def writer(n: int, server: ServerProcess) -> None:
        with httpx.Client(timeout=30) as http:
            for i in range(100_000):
                if stop.is_set():
                    return
                keys = [f"w-{n}-{i}-{j}" for j in range(3)]
                reply = http.post(
                    f"{server.base_url}/api/v1/writes",
                    headers={"X-Api-Key": key},
                    json={"items": [{"key": k, "accountId": f"acct-{n}", "bits": 3} for k in keys]},
                )
                with lock:
                    answered[keys[0]] = reply.status_code
                    sent[keys[0]] = keys
                if reply.status_code not in (202, 503):
                    raise AssertionError(reply.text)
                if reply.status_code == 503:
                    assert reply.json()["code"] == "SERVICE_UNAVAILABLE", reply.text

    unlimited = {"TRUEUP_RATE_LIMIT_PER_S": "0"}  # six writers on one key exceed its default rate
    with (
        ServerProcess(tmp_path, server_database, extra_env=unlimited, extra_args=IN_A_CHILD) as server,
        ThreadPoolExecutor(WRITERS) as pool,
    ):
        futures = [pool.submit(writer, n, server) for n in range(WRITERS)]
        try:
            child = _committer_child(server)
            for _ in range(KILLS):
                _wait_for_answers(answered, 50)
                _stop_holding_a_commit(child, server, futures)
                os.kill(child, signal.SIGKILL)
                child = _committer_child(server, other_than=child)
            _wait_for_answers(answered, 50)
        finally:
            stop.set()  # else, should the test fail here, the pool's exit waits for writers that never stop
        for future in futures:
            future.result()
        assert sum(1 for status in answered.values() if status == 503) >= KILLS  # each kill cut one short
        # Retry every request that was not acknowledged, with the same keys.
        for first, status in list(answered.items()):
            if status != 202:
                retried = _write(server, key, sent[first])
                assert retried.status_code == 202, retried.text
        stored = _stored_keys(server.database_url or f"sqlite:///{tmp_path / 'trueup.db'}")
        every_key = [k for keys in sent.values() for k in keys]
        assert sorted(stored) == sorted(every_key)  # each exactly once, none lost
        wait_until(lambda: httpx.get(f"{server.base_url}/readyz").json()["data"]["queueDepth"] == 0)
        server.stop()
    audit = trueup(["audit"], tmp_path, server_database)
    assert audit.returncode == 0, audit.stderr
    assert f"{len(every_key)} leaves" in audit.stdout


def _wait_for_answers(answered: dict[str, int], more: int) -> None:
    count = len(answered)
    wait_until(lambda: len(answered) >= count + more)


def _stored_keys(storage_url: str) -> list[str]:
    storage = open_storage(storage_url, run_migrations=False)
    try:
        with storage.engine.read() as tx:
            return [str(row[0]) for row in tx.execute("SELECT item_key FROM deltas")]
    finally:
        storage.close()


def test_a_killed_server_takes_its_child_with_it(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, None, extra_args=IN_A_CHILD).start()
    child = _committer_child(server)
    server.kill()  # SIGKILL: the child sees its stdin end
    wait_until(lambda: not alive(child))


def test_a_stopped_server_stops_its_child(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, None, extra_args=IN_A_CHILD).start()
    child = _committer_child(server)
    server.stop()  # SIGTERM
    assert not alive(child)
    assert "the committer process exited" not in server.log()  # stopped, not restarted


def test_by_default_the_server_commits_in_a_thread(tmp_path: Path) -> None:
    key = create_key(tmp_path, None)
    with ServerProcess(tmp_path, None) as server:
        assert server.process is not None
        assert children(server.process.pid, "committer") == []
        assert _committer(server) == "thread"
        assert _write(server, key, ["thread-1"]).status_code == 202


def test_a_committer_process_with_workers_is_refused(tmp_path: Path) -> None:
    done = trueup(["serve", "--port", "1", "--workers", "2", *IN_A_CHILD], tmp_path, None)
    assert done.returncode == 2
    assert "each worker commits in a thread of its own" in done.stderr


@contextmanager
def _ready_committer(tmp_path: Path, url: str | None = None) -> Iterator[CommitterProcess]:
    """A committer child over ``url`` (a fresh SQLite file by default), ready to commit;
    stopped (and the database's storage closed) afterwards."""
    url = url or f"sqlite:///{tmp_path / 'trueup.db'}"
    storage = open_storage(url)
    committer = CommitterProcess(tmp_path, url, storage.writes)
    committer.start()
    try:
        assert committer.ready_event.wait(30)
        yield committer
    finally:
        committer.stop()
        storage.close()


def test_a_failed_commit_in_the_child_is_a_storage_error(tmp_path: Path) -> None:
    with _ready_committer(tmp_path) as committer:
        draft = WriteDraft(
            tenant_id="t1",
            request_id="req_1",
            source="writes",
            accepted_at="2026-12-03T00:00:00.000000Z",
            items=[DeltaDraft("k1", "c1", 5, "", None, "2026-12-03T00:00:00.000000Z", False, b"s" * 16)],
        )
        [result] = committer.commit([draft])
        assert not isinstance(result, Exception)
        assert result.stored == (0,)
        with sqlite3.connect(tmp_path / "trueup.db") as side:
            side.execute("DROP TABLE write_requests")
        another = replace(draft, request_id="req_2", items=[draft.items[0]._replace(key="k2")])
        with pytest.raises(StorageUnavailableError, match="write_requests") as failed:
            committer.commit([another])
        # named by the id the child's log line gives it, which the replies then quote
        assert re.fullmatch(r"err_[0-9a-f]{16}", failed.value.incident_id)  # type: ignore[attr-defined]
        assert committer.ready_event.is_set()  # the child answered: it is still the committer
    assert committer.pid is not None
    assert not alive(committer.pid)


def test_a_full_disk_in_the_child_is_said_as_one(tmp_path: Path, pg_url: str) -> None:
    with _ready_committer(tmp_path, pg_url) as committer, pg_disk_full(pg_url):
        with pytest.raises(StorageFullError, match="No space left on device"):
            committer.commit([_draft("req_1", "k1")])
        assert committer.ready_event.is_set()


def test_a_child_wedged_mid_commit_is_killed_when_the_server_stops(tmp_path: Path) -> None:
    outcome: list[object] = []
    with _ready_committer(tmp_path) as committer:

        def commit() -> None:
            try:
                outcome.append(committer.commit([_draft("req_1", "k1")]))
            except Exception as exc:  # the outcome is what the test looks at
                outcome.append(exc)

        try:
            child = committer.pid
            assert child is not None
            os.kill(child, signal.SIGSTOP)  # the commit below never finishes by itself
            committing = threading.Thread(target=commit, daemon=True)
            committing.start()
            wait_until(lambda: _unread_request(child))
            stopper = threading.Thread(target=committer.stop, args=(0.5,), daemon=True)
            stopper.start()
            stopper.join(30)  # a bound for the test only: stop() gives up on the commit at 0.5 s
            assert not stopper.is_alive(), "stop() waited for the wedged commit"
            committing.join(30)
            assert len(outcome) == 1
            assert isinstance(outcome[0], CommitInterruptedError)
            assert not alive(child)
        finally:
            if committer.pid is not None and alive(committer.pid):
                os.kill(committer.pid, signal.SIGKILL)


def test_a_sigterm_to_the_child_alone_does_not_stop_it(tmp_path: Path) -> None:
    """systemd stops a service by signalling every process of it; only serve decides when the
    committer stops (after the commits queued), so the child ignores SIGTERM."""
    key = create_key(tmp_path, None)
    with ServerProcess(tmp_path, None, extra_args=IN_A_CHILD) as server:
        child = _committer_child(server)
        os.kill(child, signal.SIGTERM)
        assert _write(server, key, ["after-sigterm"]).status_code == 202
        assert alive(child)
        assert _committer(server) == "process"
        server.stop()
    assert "the committer process exited" not in server.log()


def test_replies_rendered_in_the_child_replay_verbatim(tmp_path: Path) -> None:
    """The replies stored under an Idempotency-Key are rendered by the child for every write
    route, a batch element nested 600 deep among them (its result echoes it as null)."""
    key = create_key(tmp_path, None)
    deep: object = 1
    for _ in range(600):
        deep = [deep]
    requests = [
        ("/api/v1/writes", {"items": [{"key": "w-1", "accountId": "a1", "bits": 5}]}),
        ("/api/v1/balance/delta", {"customerId": "a1", "delta": 7, "reason": "r"}),
        ("/api/v1/balance/delta/batch", {"deltas": [_emitted("b-1"), {"delta": "x"}]}),
        ("/api/v1/balance/delta/batch", {"deltas": [_emitted("b-2"), {"customerId": "a1", "delta": deep}]}),
    ]
    with ServerProcess(tmp_path, None, extra_args=IN_A_CHILD) as server:
        _committer_child(server)
        for number, (path, body) in enumerate(requests):
            headers = {"X-Api-Key": key, "Idempotency-Key": f"idem-{number}"}
            first = httpx.post(f"{server.base_url}{path}", headers=headers, json=body)
            again = httpx.post(f"{server.base_url}{path}", headers=headers, json=body)
            assert first.status_code == 202, first.text
            assert (again.status_code, again.content) == (first.status_code, first.content)


def test_a_group_pickle_refuses_is_committed_by_the_server_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # No request body reaches a draft that pickle refuses any more (batch results echo nested
    # values as null); the fallback stays for whatever else might, and is tested with a reply
    # renderer pickle cannot take.
    with _ready_committer(tmp_path) as committer:

        def render(result: WriteResult) -> StoredResponse:  # a local function: pickle refuses it
            return StoredResponse(202, f'{{"requestId":"{result.request_id}"}}')

        claim = IdempotencyClaim("idem-1", "/api/v1/writes", b"h" * 32)
        draft = replace(_draft("req_1", "k1"), idempotency=claim, render=render)
        with caplog.at_level(logging.WARNING):
            [result] = committer.commit([draft])
        assert not isinstance(result, Exception)
        assert result.stored == (0,)
        assert "could not be pickled for the committer; committing it here" in caplog.text
        assert committer.ready_event.is_set()  # nothing reached the child: it is still the committer


def _emitted(reference: str) -> dict[str, object]:
    return {"customerId": "a1", "delta": 2, "reason": "r", "referenceId": reference}


def _draft(request_id: str, item_key: str) -> WriteDraft:
    return WriteDraft(
        tenant_id="t1",
        request_id=request_id,
        source="writes",
        accepted_at="2026-12-03T00:00:00.000000Z",
        items=[DeltaDraft(item_key, "c1", 5, "", None, "2026-12-03T00:00:00.000000Z", False, b"s" * 16)],
    )
