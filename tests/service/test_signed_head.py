"""The record of the newest signed head beside the key, and the refusal of a rolled-back log."""

from __future__ import annotations

import re
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from tests.service.conftest import principal_for, seal_all, write
from tests.service.rollback import back_up, restore
from trueup.proof import EMPTY_ROOT
from trueup.service.container import Services, open_services
from trueup.service.keys import Principal
from trueup.service.settings import Settings
from trueup.service.signed_head import LogRollbackError, SignedHead, SignedHeadRecord
from trueup.storage.heads import HeadRecord


def settings_for(database_url: str, data_dir: Path) -> Settings:
    return replace(Settings(), data_dir=data_dir, database_url=database_url)


@contextmanager
def opened(settings: Settings) -> Iterator[Services]:
    """The services of one process of the log, stopped at the end as a server stops: the
    sealer records the newest head it signed."""
    services = open_services(settings)
    try:
        yield services
    finally:
        services.sealer.flush_signed_head()
        services.close()


def sealed(services: Services, who: Principal, prefix: str, count: int) -> HeadRecord:
    write(services, who, *[{"key": f"{prefix}-{i}", "accountId": "c1", "bits": i + 1} for i in range(count)])
    seal_all(services)
    head = services.storage.log.head()
    assert head is not None
    return head


def rolled_back(database_url: str, settings: Settings, backup: Path) -> tuple[HeadRecord, HeadRecord]:
    """Seal 5 deltas, back the database up, seal 3 more, restore the backup: ``(the head the
    backup holds, the newest head the key signed)``."""
    with opened(settings) as services:
        who = principal_for(services)
        older = sealed(services, who, "a", 5)
        back_up(database_url, backup)
        newer = sealed(services, who, "b", 3)
    restore(database_url, backup)
    return older, newer


def recorded(settings: Settings) -> SignedHead | None:
    return SignedHeadRecord(settings.resolved_signed_head_path).read()


def test_a_first_start_records_the_newest_head_without_complaint(database_url: str, tmp_path: Path) -> None:
    settings = settings_for(database_url, tmp_path)
    assert settings.resolved_signed_head_path == tmp_path / "signing-key.pem.signed"
    with opened(settings) as services:
        services.sealer.check_signed_head()
        assert recorded(settings) == SignedHead(0, EMPTY_ROOT)
        assert stat.S_IMODE(settings.resolved_signed_head_path.stat().st_mode) == 0o600
        head = sealed(services, principal_for(services), "a", 4)
    assert recorded(settings) == SignedHead(4, head.root)
    assert settings.resolved_signed_head_path.read_text() == f"4 {head.root.hex()}\n"


def test_an_existing_log_without_a_record_gets_one_from_its_newest_head(
    database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(database_url, tmp_path)
    with opened(settings) as services:
        head = sealed(services, principal_for(services), "a", 6)
    settings.resolved_signed_head_path.unlink()  # as a data directory of an older version has it
    with opened(settings) as services:
        services.sealer.check_signed_head()
        assert recorded(settings) == SignedHead(6, head.root)


def test_a_database_restored_from_an_older_backup_is_refused(database_url: str, tmp_path: Path) -> None:
    settings = settings_for(database_url, tmp_path / "data")
    backup = tmp_path / "backup.db"
    with opened(settings) as services:
        who = principal_for(services)
        older = sealed(services, who, "a", 5)
        back_up(database_url, backup)
        newer = sealed(services, who, "b", 3)
    assert recorded(settings) == SignedHead(8, newer.root)
    restore(database_url, backup)

    with opened(settings) as services:
        with pytest.raises(LogRollbackError) as refused:
            services.sealer.check_signed_head()
        message = str(refused.value)
        assert (
            f"{settings.resolved_signed_head_path} records that this signing key signed a tree head of "
            f"size 8 with root {newer.root.hex()}, but the database's newest head has size 5 (root "
            f"{older.root.hex()}). The database is older than what this key signed"
        ) in message
        assert "Point --data-dir or --database-url at the database this key last sealed into" in message
        assert f"move {settings.resolved_signed_head_path} aside" in message
        # The sealer itself signs nothing on it: not the heads of new deltas at sizes 6, 7, 8.
        write(services, who, *[{"key": f"c-{i}", "accountId": "c1", "bits": 1} for i in range(3)])
        with pytest.raises(LogRollbackError):
            services.sealer.seal_once()
        head = services.storage.log.head()
        assert head is not None and head.size == 5
    assert recorded(settings) == SignedHead(8, newer.root)


def test_a_restored_database_grown_past_the_record_with_other_contents_is_refused(
    database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(database_url, tmp_path / "data")
    record = settings.resolved_signed_head_path
    _, newer = rolled_back(database_url, settings, tmp_path / "backup.db")
    record.rename(tmp_path / "moved-aside")  # the guard is passed by: the restored log grows
    with opened(settings) as services:
        services.sealer.check_signed_head()
        other = sealed(services, principal_for(services), "other", 6)
    assert other.size == 11
    (tmp_path / "moved-aside").replace(record)  # and the record of size 8 comes back

    with opened(settings) as services, pytest.raises(LogRollbackError) as refused:
        services.sealer.check_signed_head()
    found = re.search(
        f"records that this signing key signed a tree head of size 8 with root {newer.root.hex()}, but the "
        r"database's tree of size 8 has root ([0-9a-f]{64}) \(its newest head has size 11\)",
        str(refused.value),
    )
    assert found is not None, refused.value
    assert found[1] != newer.root.hex()
    assert "its nodes were deleted or altered" in str(refused.value)
    assert "restore it from a backup that holds that head, or, knowingly, move" in str(refused.value)


def test_a_database_whose_nodes_of_the_recorded_head_were_deleted_is_said_to_be_damaged(
    database_url: str, tmp_path: Path
) -> None:
    """Not "older than what this key signed": the database holds a tree as large, without the
    nodes that make the signed one; moving the record aside would not mend it."""
    settings = settings_for(database_url, tmp_path / "data")
    with opened(settings) as services:
        sealed(services, principal_for(services), "a", 6)  # 4 + 2: the node (1, 2) is needed
        with services.storage.engine.write() as tx:
            tx.execute("DELETE FROM tree_nodes WHERE level = 1 AND idx = 2")
    with opened(settings) as services, pytest.raises(LogRollbackError) as refused:
        services.sealer.check_signed_head()
    message = str(refused.value)
    assert "but the database holds no tree of that size (tree nodes [(1, 2)] are missing" in message
    assert "its nodes were deleted or altered (`trueup audit` checks every node" in message
    assert "is older than what this key signed" not in message


def test_a_database_grown_past_the_record_on_the_same_log_is_served(
    database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(database_url, tmp_path / "data")
    record = settings.resolved_signed_head_path
    with opened(settings) as services:
        who = principal_for(services)
        first = sealed(services, who, "a", 5)
    shutil.copy(record, tmp_path / "at-5")
    with opened(settings) as services:
        sealed(services, who, "b", 4)  # another host of the log sealed these, say
    shutil.copy(tmp_path / "at-5", record)
    assert recorded(settings) == SignedHead(5, first.root)
    with opened(settings) as services:
        services.sealer.check_signed_head()
        assert recorded(settings) == SignedHead(5, first.root)  # a check only reads a record
        last = sealed(services, who, "c", 2)
    assert recorded(settings) == SignedHead(11, last.root)


def test_another_database_under_the_key_is_refused(database_url: str, tmp_path: Path) -> None:
    settings = settings_for(database_url, tmp_path / "data")
    with opened(settings) as services:
        head = sealed(services, principal_for(services), "a", 3)
    elsewhere = replace(settings, database_url=f"sqlite:///{tmp_path / 'new.db'}")  # a new, empty one
    with opened(elsewhere) as services, pytest.raises(LogRollbackError) as refused:
        services.sealer.check_signed_head()
    assert (
        f"signed a tree head of size 3 with root {head.root.hex()}, but the database's newest head has "
        f"size 0 (root {EMPTY_ROOT.hex()})"
    ) in str(refused.value)


def test_a_seal_that_did_not_commit_is_not_recorded(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(database_url, tmp_path)
    with opened(settings) as services:
        who = principal_for(services)
        head = sealed(services, who, "a", 3)
        write(services, who, {"key": "b", "accountId": "c1", "bits": 1})

        def lost(*_: object) -> None:
            raise OSError("the connection was lost before the commit")

        monkeypatch.setattr(services.storage.log, "seal", lost)
        with pytest.raises(OSError, match="before the commit"):
            services.sealer.seal_once()
        services.sealer.flush_signed_head()
        assert recorded(settings) == SignedHead(3, head.root)
        monkeypatch.undo()
        last = sealed(services, who, "c", 1)
    assert recorded(settings) == SignedHead(5, last.root)


def test_a_record_that_cannot_be_read_is_refused(database_url: str, tmp_path: Path) -> None:
    settings = settings_for(database_url, tmp_path)
    with opened(settings) as services:
        sealed(services, principal_for(services), "a", 2)
    settings.resolved_signed_head_path.write_text("2 not-a-root\n")
    with opened(settings) as services, pytest.raises(LogRollbackError, match="does not hold a record"):
        services.sealer.check_signed_head()


def test_the_record_can_be_kept_elsewhere(database_url: str, tmp_path: Path) -> None:
    settings = replace(settings_for(database_url, tmp_path / "data"), signed_head_path=tmp_path / "heads")
    assert Settings.from_env({"TRUEUP_SIGNED_HEAD_FILE": "x/y"}).resolved_signed_head_path == Path("x/y")
    with opened(settings) as services:
        head = sealed(services, principal_for(services), "a", 2)
    assert SignedHeadRecord(tmp_path / "heads").read() == SignedHead(2, head.root)
    assert not (tmp_path / "data" / "signing-key.pem.signed").exists()


def head_of(size: int) -> HeadRecord:
    return HeadRecord(size=size, root=bytes([size]) * 32, timestamp_ms=0, checkpoint="")


def test_the_record_is_written_at_most_once_an_interval_and_when_sealing_stops(tmp_path: Path) -> None:
    now = [100.0]
    record = SignedHeadRecord(tmp_path / "heads", interval_s=1.0, clock=lambda: now[0])
    record.signed(head_of(1))
    assert record.read() == SignedHead(1, bytes([1]) * 32)  # the first at once
    now[0] = 100.5
    record.signed(head_of(2))
    record.flush(due_only=True)
    assert record.read() == SignedHead(1, bytes([1]) * 32)  # within the interval: held
    now[0] = 101.0
    record.flush(due_only=True)  # as an idle seal does
    assert record.read() == SignedHead(2, bytes([2]) * 32)
    now[0] = 101.2
    record.signed(head_of(3))
    assert record.read() == SignedHead(2, bytes([2]) * 32)
    record.flush()  # sealing stops
    assert record.read() == SignedHead(3, bytes([3]) * 32)


def test_the_record_never_goes_back(tmp_path: Path) -> None:
    """A process that lost the role may write after the one that took it over on this host."""
    path = tmp_path / "heads"
    SignedHeadRecord(path).signed(head_of(9))
    SignedHeadRecord(path).signed(head_of(4))
    assert SignedHeadRecord(path).read() == SignedHead(9, bytes([9]) * 32)


def test_the_record_of_a_key_kept_elsewhere_is_in_the_data_directory(tmp_path: Path) -> None:
    # A key mounted read-only (a container's secret) cannot have a file written beside it: the
    # record goes to the data directory, which the server writes anyway.
    settings = Settings.from_env(
        {"TRUEUP_DATA_DIR": str(tmp_path / "data"), "TRUEUP_SIGNING_KEY": "/run/keys/log.pem"}
    )
    assert settings.resolved_signed_head_path == tmp_path / "data" / "log.pem.signed"


def test_a_key_moved_under_another_name_does_not_start_a_new_record_beside_the_old_one(
    database_url: str, tmp_path: Path
) -> None:
    """The record is named after the key file: the same key given as keys/log.pem would find no
    log.pem.signed and start one from whatever database it is pointed at (an older backup
    included), with signing-key.pem.signed, this key's record, ignored beside it."""
    data = tmp_path / "data"
    settings = settings_for(database_url, data)
    _, newer = rolled_back(database_url, settings, tmp_path / "backup.db")
    (tmp_path / "keys").mkdir()
    moved = tmp_path / "keys" / "log.pem"
    shutil.move(data / "signing-key.pem", moved)
    renamed = replace(settings, signing_key_path=moved)
    old = data / "signing-key.pem.signed"
    with opened(renamed) as services:
        with pytest.raises(LogRollbackError) as refused:
            services.sealer.check_signed_head()
        assert str(refused.value).startswith(
            f"there is no record of signed tree heads at {data / 'log.pem.signed'}, which is named after "
            f"the signing key's file, but {old} is one, named after a key file of another name: if the key "
            "was moved or renamed since, rename signing-key.pem.signed to log.pem.signed;"
        )
    assert not (data / "log.pem.signed").exists()
    old.rename(data / "log.pem.signed")  # as the message says: now the rollback itself is seen
    signed = f"size 8 with root {newer.root.hex()}"
    with opened(renamed) as services, pytest.raises(LogRollbackError, match=signed):
        services.sealer.check_signed_head()
    # Named by TRUEUP_SIGNED_HEAD_FILE, the record is where it is said to be: nothing is looked for.
    (data / "log.pem.signed").rename(old)
    elsewhere = replace(renamed, signed_head_path=data / "chosen.signed")
    with opened(elsewhere) as services:
        services.sealer.check_signed_head()
    assert SignedHeadRecord(data / "chosen.signed").read() is not None


def test_only_another_record_beside_it_stops_a_start(database_url: str, tmp_path: Path) -> None:
    """A directory or a file of another kind whose name ends in .signed is no record."""
    data = tmp_path / "data"
    (data / "backups.signed").mkdir(parents=True)
    (data / "notes.signed").write_text("signed by the auditors on 2026-12-01\n")
    (data / "big.signed").write_bytes(b"7 " + b"ab" * 32 + b"\n" + b" " * 10_000)
    settings = settings_for(database_url, data)
    with opened(settings) as services:
        services.sealer.check_signed_head()
        head = sealed(services, principal_for(services), "a", 2)
    assert recorded(settings) == SignedHead(2, head.root)
