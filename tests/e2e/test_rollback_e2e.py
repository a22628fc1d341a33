"""The real server refuses a database rolled back under its signing key, and only that: a
restart, a crash in the middle of a load and a first start are served as before."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ServerProcess, children, create_key, trueup, wait_until, write_and_wait_verified
from tests.service.rollback import back_up, restore
from trueup.proof import EMPTY_ROOT
from trueup.service.signed_head import SignedHead, SignedHeadRecord


def storage_url(data_dir: Path, server_database: str | None) -> str:
    return server_database or f"sqlite:///{data_dir / 'trueup.db'}"


def test_serve_refuses_a_database_restored_from_an_older_backup(
    server_database: str | None, tmp_path: Path
) -> None:
    data_dir, backup = tmp_path / "data", tmp_path / "backup.db"
    record = SignedHeadRecord(data_dir / "signing-key.pem.signed")
    key = create_key(data_dir, server_database)
    with ServerProcess(data_dir, server_database) as server:
        assert record.read() == SignedHead(0, EMPTY_ROOT)  # a first start records the log's head
        write_and_wait_verified(server, key, "a")
    assert record.read() is not None and record.read().size == 10  # type: ignore[union-attr]
    back_up(storage_url(data_dir, server_database), backup)
    with ServerProcess(data_dir, server_database) as server:  # a restart is served
        write_and_wait_verified(server, key, "b")
    signed = record.path.read_bytes()
    assert signed.startswith(b"20 ")
    restore(storage_url(data_dir, server_database), backup)

    refused = ServerProcess(data_dir, server_database)
    try:
        with pytest.raises(RuntimeError, match="server exited at start"):
            refused.start()
    finally:
        refused.stop()  # one that started after all is not left running
    assert refused.process is not None and refused.process.returncode == 1
    log = refused.log()
    assert (
        f"trueup serve: cannot start: {record.path} records that this signing key signed a tree head of "
        f"size 20 with root {signed.split()[1].decode()}, but the database's newest head has size 10"
    ) in log
    assert "Traceback" not in log
    # `trueup sequencer` alone too (were it to seal instead, the command's time limit fails it).
    sequencer = trueup(["sequencer"], data_dir, server_database)
    assert sequencer.returncode == 1
    assert sequencer.stderr.startswith(
        f"trueup sequencer: {record.path} records that this signing key signed a tree head of size 20"
    ), sequencer.stderr

    audited = trueup(["audit"], data_dir, server_database)
    assert audited.returncode == 1, audited.stdout + audited.stderr
    assert f"audit FAILED: {record.path} records that this signing key signed a tree head of size 20" in (
        audited.stderr
    )
    assert record.path.read_bytes() == signed  # the audit only reads


def test_a_server_killed_during_a_load_starts_again(server_database: str | None, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    record = SignedHeadRecord(data_dir / "signing-key.pem.signed")
    key = create_key(data_dir, server_database)
    server = ServerProcess(data_dir, server_database).start()
    stop = threading.Event()

    def load(client: int) -> None:
        with httpx.Client(base_url=server.base_url, headers={"X-Api-Key": key}, timeout=30) as http:
            for i in range(100_000):
                if stop.is_set():
                    return
                items = [
                    {"key": f"load-{client}-{i}-{j}", "accountId": f"c{j}", "bits": 1} for j in range(50)
                ]
                try:
                    http.post("/api/v1/writes", json={"items": items})
                except httpx.HTTPError:
                    return  # the server was killed under this request

    writers = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for writer in writers:
        writer.start()
    try:
        # Seals go on and are recorded while the load runs: kill the sealing process and the
        # server outright once one was recorded beyond the first few, in the middle of it.
        wait_until(lambda: (record.read() or SignedHead(0, b"")).size >= 400, timeout_s=60)
        sequencer = children(server.process.pid, "sequencer")  # type: ignore[union-attr]
        assert len(sequencer) == 1
        os.kill(sequencer[0], signal.SIGKILL)
        server.kill()
    finally:
        stop.set()
        for writer in writers:
            writer.join()
        server.kill()

    with ServerProcess(data_dir, server_database) as again:  # the record claims no more than was committed
        reply = httpx.post(
            f"{again.base_url}/api/v1/writes",
            headers={"X-Api-Key": key},
            json={"items": [{"key": "after", "accountId": "c0", "bits": 1}]},
        )
        assert reply.status_code == 202, reply.text
        request = f"{again.base_url}/api/v1/writes/{reply.json()['data']['requestId']}"
        # Sealed after the backlog the load left: a safety net of minutes on a busy machine.
        wait_until(
            lambda: httpx.get(request, headers={"X-Api-Key": key}).json()["data"]["status"] == "verified",
            timeout_s=300,
        )
    audited = trueup(["audit"], data_dir, server_database)
    assert audited.returncode == 0, audited.stdout + audited.stderr
