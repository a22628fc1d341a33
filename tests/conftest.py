"""Shared fixtures: a database of each backend, and the real server process.

PostgreSQL tests use ``TRUEUP_TEST_DATABASE_URL`` (default: the local server's ``test``
database) and a fresh schema per test. Where no server answers they are skipped with the
reason shown, unless ``TRUEUP_REQUIRE_POSTGRES=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import psycopg
import pytest

if TYPE_CHECKING:
    from trueup.service.container import Services
    from trueup.storage.engine import Engine

PG_URL = os.environ.get("TRUEUP_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("TRUEUP_REQUIRE_POSTGRES") == "1"

_pg_state: dict[str, str | None] = {}


def _pg_problem() -> str | None:
    if "problem" not in _pg_state:
        try:
            with psycopg.connect(PG_URL, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _pg_state["problem"] = None
        except psycopg.Error as exc:
            _pg_state["problem"] = f"PostgreSQL not reachable at {PG_URL}: {exc}".strip()
    return _pg_state["problem"]


def require_postgres() -> None:
    problem = _pg_problem()
    if problem is None:
        return
    if REQUIRE_PG:
        pytest.fail(f"{problem} (TRUEUP_REQUIRE_POSTGRES=1: PostgreSQL tests must run)")
    pytest.skip(f"{problem}; set TRUEUP_TEST_DATABASE_URL to run the PostgreSQL tests")


@contextmanager
def fresh_pg_schema() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, empty schema (dropped afterwards)."""
    require_postgres()
    schema = "trueup_test_" + secrets.token_hex(6)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def pg_disk_full(url: str) -> Iterator[None]:
    """While inside, every insert into the deltas of the schema at ``url`` fails as a full
    disk does on PostgreSQL: SQLSTATE 53100 ``disk_full``, raised by a trigger."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """CREATE FUNCTION trueup_test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                   RAISE EXCEPTION 'could not extend file: No space left on device'
                       USING ERRCODE = 'disk_full';
               END $$"""
        )
        conn.execute(
            """CREATE TRIGGER trueup_test_disk_full BEFORE INSERT ON deltas
               FOR EACH STATEMENT EXECUTE FUNCTION trueup_test_disk_full()"""
        )
    try:
        yield
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP FUNCTION trueup_test_disk_full() CASCADE")


@contextmanager
def disk_full(services: Services) -> Iterator[None]:
    """The database of ``services`` with its disk full while inside (a real error from a real
    database, made on demand), and room again after. On SQLite the writer's ``PRAGMA
    max_page_count`` is set to the pages the file holds: SQLite then answers SQLITE_FULL, as it
    does when the file system has no room. On PostgreSQL, :func:`pg_disk_full`."""
    from trueup.storage.sqlite import SQLiteEngine  # noqa: PLC0415 - as Services, for fixtures only

    engine = services.storage.engine
    if isinstance(engine, SQLiteEngine):
        writer = engine._writer
        pages = writer.execute("PRAGMA page_count").fetchone()[0]
        writer.execute(f"PRAGMA max_page_count = {pages}")
        try:
            yield
        finally:
            writer.execute("PRAGMA max_page_count = 4294967294")
        return
    with pg_disk_full(services.settings.resolved_database_url):
        yield


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_pg_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def server_database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Each test using this runs once per backend, as a server process is given it: ``None``
    for the SQLite database of the server's data directory, else a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield None
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[str]:
    """Each test using this runs once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{os.path.join(tmp_path, 'trueup.db')}"
    else:
        yield request.getfixturevalue("pg_url")


def lose_the_lock(role: str, services: Services) -> None:
    """End the process's lock on ``role`` as the world outside it would: its PostgreSQL session
    terminated (as a server restart, a failover or an idle timeout does), its SQLite lock file
    deleted."""
    url = services.settings.resolved_database_url
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///") + f".{role}.lock").unlink()
        return
    end_lock_session(url, services.storage.engine, role)


def end_lock_session(url: str, engine: Engine, role: str) -> None:
    """Terminate the PostgreSQL session that holds ``engine``'s lock on ``role``."""
    from trueup.storage.postgres_locks import advisory_lock_ids  # noqa: PLC0415 - psycopg's side only

    key = engine.lock_key(role)  # type: ignore[attr-defined]
    with psycopg.connect(url, autocommit=True) as conn:
        ended = conn.execute(
            """SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'
               AND classid = %s AND objid = %s AND objsubid = 1 AND granted""",
            advisory_lock_ids(key),
        ).fetchall()
    assert ended == [(True,)]
