"""Fixtures that start the real server: one per backend, shared by a module's tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import fresh_pg_schema
from tests.e2e.server import ServerProcess, create_key


@dataclass
class Running:
    server: ServerProcess
    key: str
    data_dir: Path
    database_url: str | None

    @property
    def url(self) -> str:
        return self.server.base_url

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Api-Key": self.key, "Content-Type": "application/json"}

    @property
    def storage_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'trueup.db'}"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def running(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A server (module-scoped) over each backend, with a read-write key for tenant acme."""
    data_dir = tmp_path_factory.mktemp("server")
    if request.param == "sqlite":
        key = create_key(data_dir, None)
        with ServerProcess(data_dir, None) as server:
            yield Running(server, key, data_dir, None)
    else:
        with fresh_pg_schema() as url:
            key = create_key(data_dir, url)
            with ServerProcess(data_dir, url) as server:
                yield Running(server, key, data_dir, url)
