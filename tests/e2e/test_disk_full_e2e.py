"""A real server whose data directory is on a file system that fills up: a small tmpfs, filled
to the last byte by a file of the size the file system says is free (no timing involved).

Mounting needs root: elsewhere these tests are skipped, and say so.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import ServerProcess, create_key, trueup, wait_until
from trueup.storage.errors import StorageFullError

_ROUTES = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/api/v1/log/checkpoint",
    "/api/v1/log/key",
    "/api/v1/balance/usage",
    "/api/v1/balance/customers",
    "/api/v1/balance/derive/cust_1",
    "/api/v1/writes/req_aaaaaaaaaaaaaaaaaaaa",
    "/api/v1/balance/delta/rec_aaaaaaaaaaaaaaaaaaaa_0",
    "/api/v1/no-such-route",
]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs at a new directory, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system to fill needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True, timeout=30, check=True)


def _fill(disk: Path) -> Path:
    """Take every free byte of ``disk`` with one file; return it (deleting it frees the space)."""
    filler = disk / "filler"
    with filler.open("wb") as handle:
        # The server may take some of the free space meanwhile (a WAL checkpoint): then the
        # file takes what is left on the next pass.
        for _ in range(100):
            stat = os.statvfs(disk)
            if stat.f_bavail == 0:
                return filler
            with contextlib.suppress(OSError):  # ENOSPC: less is free than was a moment ago
                os.posix_fallocate(
                    handle.fileno(), os.fstat(handle.fileno()).st_size, stat.f_bavail * stat.f_frsize
                )
    raise AssertionError(f"{disk} could not be filled")


def _items(prefix: str, count: int) -> list[dict[str, Any]]:
    return [
        {"key": f"{prefix}-{i}", "accountId": "cust_1", "bits": i + 1, "metadata": {"pad": "x" * 2000}}
        for i in range(count)
    ]


def test_a_full_disk_takes_no_worker_down_and_writes_resume_once_there_is_room(small_disk: Path) -> None:
    """With --workers, each worker keeps its metrics in files it writes through mmap; where those
    files were on the full disk, a worker's first write to a new page of one killed it (SIGBUS),
    and every worker started after it, so nothing answered, reads and probes included."""
    data_dir = small_disk / "data"
    key = create_key(data_dir, None)
    headers = {"X-Api-Key": key}
    with (
        ServerProcess(data_dir, None, extra_args=["--workers", "2"]) as server,
        httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client,
    ):
        workers = {client.get("/readyz").json()["data"]["pid"] for _ in range(10)}
        stored = client.post("/api/v1/writes", json={"items": _items("before", 5)})
        assert stored.status_code == 202, stored.text
        filler = _fill(small_disk)
        refused: list[httpx.Response] = []
        for round_ in range(6):  # each worker answers some: every route, its 2xx, 4xx and 5xx
            refused.append(client.post("/api/v1/writes", json={"items": _items(f"full-{round_}", 20)}))
            for path in _ROUTES:
                answer = client.get(path)
                assert answer.status_code < 500 or path == "/api/v1/no-such-route", (path, answer.text)
                assert client.get(path, headers={"X-Api-Key": "pk_live_nope"}).status_code < 500
                assert client.delete(path).status_code in (404, 405)
            workers.add(client.get("/readyz").json()["data"]["pid"])
        for reply in refused:
            assert reply.status_code == 503, reply.text
            assert reply.json()["message"] == StorageFullError.reply
            assert reply.headers["Retry-After"] == "1"
        assert len(workers) <= 2, f"workers were replaced while the disk was full: {workers}"

        filler.unlink()
        for round_ in range(6):  # the same writes again: stored once each now
            retried = client.post("/api/v1/writes", json={"items": _items(f"full-{round_}", 20)})
            assert retried.status_code == 202, retried.text
        derive = lambda: client.get("/api/v1/balance/derive/cust_1").json()["data"]  # noqa: E731
        wait_until(lambda: derive()["deltasCount"] == 5 + 6 * 20, timeout_s=60)
        assert derive()["computedBalance"] == sum(range(1, 6)) + 6 * sum(range(1, 21))
    audit = trueup(["audit"], data_dir, None)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_a_server_started_on_a_full_disk_says_so_and_starts_once_there_is_room(small_disk: Path) -> None:
    data_dir = small_disk / "data"
    key = create_key(data_dir, None)
    with ServerProcess(data_dir, None) as server:
        stored = httpx.post(
            f"{server.base_url}/api/v1/writes",
            json={"items": _items("before", 5)},
            headers={"X-Api-Key": key},
            timeout=30,
        )
        assert stored.status_code == 202, stored.text
    filler = _fill(small_disk)
    refused = ServerProcess(data_dir, None)
    refused.log_path = small_disk.parent / "refused.log"  # not on the full disk
    with pytest.raises(RuntimeError, match="the disk is full"):
        refused.start()
    assert refused.process is not None
    assert refused.process.returncode == 1
    filler.unlink()
    with ServerProcess(data_dir, None) as server:
        derive = lambda: httpx.get(  # noqa: E731
            f"{server.base_url}/api/v1/balance/derive/cust_1", headers={"X-Api-Key": key}, timeout=30
        ).json()["data"]
        wait_until(lambda: derive()["deltasCount"] == 5, timeout_s=60)
        assert derive()["computedBalance"] == 15
