"""A damaged SQLite file: the audit says so in one line (exit 1), whether the damage lies where
its walk reads (the table of deltas) or where it never does (an index), and the storage layer
names it as damage, which no retry mends."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from tests.service.conftest import sealed_log
from trueup.cli import audit as cli_audit
from trueup.service.container import Services, open_services
from trueup.service.settings import Settings
from trueup.storage import open_storage
from trueup.storage.errors import StorageCorruptError


@pytest.fixture
def sealed(tmp_path: Path) -> tuple[Settings, Path]:
    """A sealed log of 30 deltas in a SQLite file, the server's connections closed and its
    write-ahead log copied into the file (so that its pages can be edited in place)."""
    database = tmp_path / "trueup.db"
    settings = replace(Settings(), data_dir=tmp_path, database_url=f"sqlite:///{database}")
    services: Services = open_services(settings)
    try:
        sealed_log(services)
    finally:
        services.close()
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return settings, database


def _edit_page(database: Path, name: str, edit: bytes, at: bytes | None = None) -> None:
    """Write ``edit`` over ``at`` in the first page of table or index ``name`` (over the page's
    first byte, its type, when ``at`` is None)."""
    with sqlite3.connect(database) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = ?", (name,)).fetchone()[0]
    conn.close()
    with database.open("r+b") as handle:
        handle.seek((root - 1) * page_size)
        page = bytearray(handle.read(page_size))
        where = 0 if at is None else page.index(at)
        page[where : where + len(edit)] = edit
        handle.seek((root - 1) * page_size)
        handle.write(page)


def _audit(settings: Settings, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli_audit.run(
        ["--data-dir", str(settings.data_dir), "--database-url", settings.resolved_database_url]
    )
    return code, capsys.readouterr().err


def test_an_audit_finds_a_damaged_index_its_walk_never_reads(
    sealed: tuple[Settings, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The index of item keys: every delta, leaf and balance still rebuilds and agrees, so the
    walk alone passed this file, whose writes would now refuse or double keys."""
    settings, database = sealed
    _edit_page(database, "deltas_tenant_key", b"k1-Z", at=b"k1-5")
    code, err = _audit(settings, capsys)
    assert code == 1
    assert err.startswith("audit FAILED: the database file is damaged: ")
    assert "deltas_tenant_key" in err
    assert err.endswith(" (restore the database from a backup: docs/operations.md)\n")
    assert err.count("\n") == 1, err  # one line, as operations.md says: SQLite's findings hold breaks


def test_a_damaged_table_is_a_failed_audit_and_a_storage_error_not_a_traceback(
    sealed: tuple[Settings, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, database = sealed
    _edit_page(database, "deltas", b"\x00")  # no kind of b-tree page
    storage = open_storage(settings.resolved_database_url, run_migrations=False, checkpoint_wal=False)
    try:
        with (
            pytest.raises(
                StorageCorruptError, match="the database file is damaged: database disk image is malformed"
            ),
            storage.engine.read() as tx,
        ):
            tx.execute("SELECT COUNT(*) FROM deltas WHERE amount > 0")
    finally:
        storage.close()
    code, err = _audit(settings, capsys)
    assert code == 1
    assert err.startswith("audit FAILED: the database file is damaged: ")
