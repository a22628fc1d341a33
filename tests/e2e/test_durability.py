"""Nothing acknowledged with a 202 is lost when the server is killed with SIGKILL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.conftest import fresh_pg_schema
from tests.e2e.server import ServerProcess, create_key, wait_until
from trueup.storage import open_storage


def _stored_keys(storage_url: str) -> dict[str, str]:
    storage = open_storage(storage_url, run_migrations=False)
    try:
        with storage.engine.read() as tx:
            return {str(k): str(s) for k, s in tx.execute("SELECT item_key, status FROM deltas")}
    finally:
        storage.close()


def _kill_during_writes(server: ServerProcess, key: str) -> set[str]:
    """Write from 20 clients; SIGKILL the server once 100 requests are acknowledged."""
    acknowledged: set[str] = set()
    killed = asyncio.Event()

    async def client(n: int, http: httpx.AsyncClient) -> None:
        for i in range(1000):
            if killed.is_set():
                return
            keys = [f"kill-{n}-{i}-{j}" for j in range(5)]
            try:
                reply = await http.post(
                    f"{server.base_url}/api/v1/writes",
                    headers={"X-Api-Key": key},
                    json={"items": [{"key": k, "accountId": f"c{n}", "bits": 1} for k in keys]},
                )
            except httpx.HTTPError:
                return  # the server died under this request: it was never acknowledged
            if reply.status_code == 202:
                acknowledged.update(keys)
            if len(acknowledged) >= 500 and not killed.is_set():
                killed.set()
                server.kill()

    async def main() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            await asyncio.gather(*(client(n, http) for n in range(20)))

    asyncio.run(main())
    assert killed.is_set(), "the writers finished before the kill"
    return acknowledged


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigkill_after_202s_loses_nothing(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        _run(tmp_path, None)
    else:
        with fresh_pg_schema() as url:
            _run(tmp_path, url)


def _run(data_dir: Path, database_url: str | None) -> None:
    key = create_key(data_dir, database_url)
    storage_url = database_url or f"sqlite:///{data_dir / 'trueup.db'}"
    server = ServerProcess(data_dir, database_url).start()
    try:
        acknowledged = _kill_during_writes(server, key)
    finally:
        server.kill()
    stored = _stored_keys(storage_url)
    lost = acknowledged - set(stored)
    assert not lost, f"{len(lost)} acknowledged items lost, e.g. {sorted(lost)[:3]}"
    # After a restart the sequencer resumes and seals every one of them.
    with ServerProcess(data_dir, database_url):
        wait_until(lambda: all(s == "verified" for s in _stored_keys(storage_url).values()))
    assert set(_stored_keys(storage_url)) >= acknowledged
