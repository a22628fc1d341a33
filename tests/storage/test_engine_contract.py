"""The bulk helpers of the engine contract (``Tx.one_of``, ``update_rows``, ``upsert_rows``),
run against every backend on a scratch table of their own."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from trueup.storage import StorageUnavailableError, open_storage, postgres
from trueup.storage.engine import Engine
from trueup.storage.errors import IntegrityConflictError
from trueup.storage.postgres_arrays import typed_array

_COLUMNS = {"id": "bigint", "name": "text", "amount": "bigint"}


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    storage = open_storage(database_url)
    with storage.engine.write() as tx:
        tx.execute("CREATE TABLE scratch (id BIGINT PRIMARY KEY, name TEXT NOT NULL, amount BIGINT NOT NULL)")
        tx.insert_rows("scratch", list(_COLUMNS), [(i, f"n{i}", i * 10) for i in range(1, 11)])
    yield storage.engine
    storage.close()


def rows(engine: Engine) -> list[tuple[int, str, int]]:
    with engine.read() as tx:
        return [(int(a), str(b), int(c)) for a, b, c in tx.execute("SELECT * FROM scratch ORDER BY id")]


def test_one_of_matches_exactly_the_values(engine: Engine) -> None:
    with engine.read() as tx:
        match, params = tx.one_of("name", ["n2", "n7", "absent", "n2"], "text")
        found = tx.execute(f"SELECT id FROM scratch WHERE amount > ? AND {match} ORDER BY id", (0, *params))
        assert [int(r[0]) for r in found] == [2, 7]
        match, params = tx.one_of("id", [3, 10_000_000_000], "bigint")
        assert [int(r[0]) for r in tx.execute(f"SELECT id FROM scratch WHERE {match}", params)] == [3]


def test_a_read_nested_in_another_on_its_thread_joins_its_snapshot(engine: Engine) -> None:
    """On every backend: what one caller reads in steps inside one read (an audit) is one state,
    whatever is committed meanwhile; a read on another thread sees the commit."""

    def count() -> int:
        with engine.read() as tx:
            return int(tx.scalar("SELECT COUNT(*) FROM scratch"))

    with engine.read() as outer:
        assert int(outer.scalar("SELECT COUNT(*) FROM scratch")) == 10
        with engine.write() as tx:
            tx.insert_rows("scratch", list(_COLUMNS), [(11, "n11", 110)])
        assert count() == 10  # nested: the outer snapshot
        elsewhere: list[int] = []
        reader = threading.Thread(target=lambda: elsewhere.append(count()))
        reader.start()
        reader.join(30)
        assert elsewhere == [11]
    assert count() == 11


def test_update_rows_sets_each_row_by_key_and_leaves_the_rest(engine: Engine) -> None:
    # Keys out of order and not a run: the update must not depend on them being contiguous.
    with engine.write() as tx:
        tx.update_rows(
            "scratch",
            "id",
            {"name": "text", "amount": "bigint"},
            [(9, "nine", -9), (2, "'two', NULL", 2**62), (5, "five", 0)],
        )
        tx.update_rows("scratch", "id", {"amount": "bigint"}, [])
    assert rows(engine) == [
        (1, "n1", 10),
        (2, "'two', NULL", 2**62),
        (3, "n3", 30),
        (4, "n4", 40),
        (5, "five", 0),
        (6, "n6", 60),
        (7, "n7", 70),
        (8, "n8", 80),
        (9, "nine", -9),
        (10, "n10", 100),
    ]


def test_upsert_rows_inserts_new_rows_and_updates_only_the_named_columns(engine: Engine) -> None:
    with engine.write() as tx:
        tx.upsert_rows(
            "scratch",
            ("id",),
            _COLUMNS,
            ("amount",),
            [(3, "ignored", 33), (11, 'n11 "{,}"', 110), (12, "n12", -120)],
        )
        tx.upsert_rows("scratch", ("id",), _COLUMNS, ("amount",), [])
    stored = rows(engine)
    assert stored[2] == (3, "n3", 33)  # the name is not in `update`: kept
    assert stored[10:] == [(11, 'n11 "{,}"', 110), (12, "n12", -120)]
    assert len(stored) == 12


def _update_then_fail(engine: Engine) -> None:
    with engine.write() as tx:
        tx.update_rows("scratch", "id", {"amount": "bigint"}, [(1, 0), (2, 0)])
        raise RuntimeError("abort")


def test_a_failed_bulk_update_rolls_back_with_its_transaction(engine: Engine) -> None:
    with pytest.raises(RuntimeError, match="abort"):
        _update_then_fail(engine)
    assert rows(engine)[:2] == [(1, "n1", 10), (2, "n2", 20)]


def test_repeated_keys_are_refused_on_every_backend(engine: Engine) -> None:
    # Which repeat would win differs between the backends (PostgreSQL even fails the upsert),
    # so the contract refuses them before any statement runs.
    with engine.write() as tx:
        with pytest.raises(ValueError, match="repeats a key"):
            tx.update_rows("scratch", "id", {"amount": "bigint"}, [(1, 5), (1, 6)])
        with pytest.raises(ValueError, match="repeats a key"):
            tx.upsert_rows("scratch", ("id",), _COLUMNS, ("amount",), [(20, "a", 1), (20, "b", 2)])
    assert rows(engine)[0] == (1, "n1", 10)
    assert len(rows(engine)) == 10


def test_update_rows_counts_and_only_touches_rows_meeting_the_condition(engine: Engine) -> None:
    with engine.write() as tx:
        # `name` is both set and tested: the condition must read the stored value.
        updated = tx.update_rows(
            "scratch",
            "id",
            {"name": "text", "amount": "bigint"},
            [(1, "one", 1), (2, "two", 2), (3, "three", 3), (99, "absent", 99)],
            only_if="name <> 'n2'",
        )
        assert updated == 2
        assert tx.update_rows("scratch", "id", {"amount": "bigint"}, [(4, 44)]) == 1
        assert tx.update_rows("scratch", "id", {"amount": "bigint"}, []) == 0
    assert rows(engine)[:4] == [(1, "one", 1), (2, "n2", 20), (3, "three", 3), (4, "n4", 44)]


def test_bulk_helpers_carry_more_rows_than_one_statement_holds(engine: Engine) -> None:
    # SQLite puts many rows in each statement, up to a limit of parameters; 7,000 rows of
    # three columns need several statements, and none may be lost or doubled at the seams.
    many = range(100, 7_100)
    with engine.write() as tx:
        tx.insert_rows("scratch", list(_COLUMNS), [(i, f"n{i}", i) for i in many])
        updated = tx.update_rows(
            "scratch", "id", {"amount": "bigint"}, [(i, -i) for i in many], only_if="amount % 2 = 0"
        )
        assert updated == len([i for i in many if i % 2 == 0])
        tx.upsert_rows("scratch", ("id",), _COLUMNS, ("name",), [(i, f"m{i}", 0) for i in range(50, 7_150)])
    stored = rows(engine)
    assert len(stored) == 10 + 50 + 7_000 + 50
    by_id = {row[0]: row for row in stored}
    assert by_id[100] == (100, "m100", -100) and by_id[101] == (101, "m101", 101)
    assert by_id[7_099] == (7_099, "m7099", 7_099) and by_id[7_098] == (7_098, "m7098", -7_098)
    assert by_id[50] == (50, "m50", 0) and by_id[7_149] == (7_149, "m7149", 0)
    assert by_id[10] == (10, "n10", 100)


def test_insert_rows_by_statement_stores_what_copy_stores(engine: Engine) -> None:
    """Given the columns' kinds, PostgreSQL inserts by statements from arrays rather than by
    COPY (a seal's nodes): every row, bytes and text of every shape included, across parts,
    bytes of one length (cut apart by row number) and of many, NULL among them."""
    blobs = [b"", b"\x00", b'\\"{},x', bytes(range(256)), b"\x01" * 32, None]
    texts = ["", "NULL", 'a "b" \\ {c},d', "é\u2014"]
    many = [
        (i, texts[i % len(texts)], blobs[i % len(blobs)], i.to_bytes(32, "big")) for i in range(1, 12_001)
    ]
    with engine.write() as tx:
        tx.execute(
            "CREATE TABLE blobs (id BIGINT PRIMARY KEY, name TEXT NOT NULL, body BYTEA, hash BYTEA NOT NULL)"
        )
        tx.insert_rows("blobs", ("id", "name", "body", "hash"), many, ("bigint", "text", "bytea", "bytea"))
        stored = [
            (int(a), str(b), None if c is None else bytes(c), bytes(d))
            for a, b, c, d in tx.execute("SELECT * FROM blobs ORDER BY id")
        ]
    assert stored == many


def test_update_rows_conditions_name_only_stored_columns(engine: Engine) -> None:
    # Each backend joins the new values under names of its own; a stored column that happens
    # to share a name the backend could have used (SQLite calls VALUES columns column1 ...)
    # must still mean the stored one in `only_if`.
    with engine.write() as tx:
        tx.execute("CREATE TABLE odd (id BIGINT PRIMARY KEY, column2 BIGINT NOT NULL, _0 BIGINT)")
        tx.insert_rows("odd", ("id", "column2", "_0"), [(1, 0, 5), (2, 1, 5)])
        updated = tx.update_rows("odd", "id", {"_0": "bigint"}, [(1, 7), (2, 8)], only_if="column2 = 0")
        assert updated == 1
        stored = [tuple(map(int, row)) for row in tx.execute("SELECT * FROM odd ORDER BY id")]
        assert stored == [(1, 0, 7), (2, 1, 5)]


def test_relations_join_every_row_once_across_parts(engine: Engine, database_url: str) -> None:
    # Rows with a repeat, a value no stored row has, and more rows than one SQLite part holds.
    wanted = [(i, f"n{i}") for i in (3, 7, 7, 10)] + [(i, "absent") for i in range(1, 11)] + [(42, "n42")]
    with engine.read() as tx:
        assert list(tx.relations([], ("bigint", "text"), 2)) == []
        found: list[tuple[int, str, int]] = []
        parts = 0
        for relation, params in tx.relations(wanted, ("bigint", "text"), 2):
            parts += 1
            found.extend(
                (int(a), str(b), int(c))
                for a, b, c in tx.execute(
                    f"SELECT s.id, s.name, s.amount FROM {relation} JOIN scratch s "
                    "ON s.id = w.column1 AND s.name = w.column2",
                    params,
                )
            )
    assert sorted(found) == [(3, "n3", 30), (7, "n7", 70), (7, "n7", 70), (10, "n10", 100)]
    # SQLite: parts of `part` rows; PostgreSQL: one array per column, up to 5,000 rows a part.
    assert parts == (8 if database_url.startswith("sqlite") else 1)


def test_refresh_statistics_analyses_on_postgresql_only(engine: Engine, database_url: str) -> None:
    engine.refresh_statistics(["scratch"])
    if database_url.startswith("sqlite"):
        with engine.read() as tx:  # SQLite is never analysed: no statistics table appears
            assert tx.execute("SELECT name FROM sqlite_master WHERE name = 'sqlite_stat1'") == []
        return
    with engine.read() as tx:
        # reltuples is -1 until the table is first analysed or vacuumed.
        assert tx.scalar("SELECT reltuples FROM pg_class WHERE oid = 'scratch'::regclass") == 10


def test_refresh_statistics_skips_a_table_another_session_holds(pg_url: str) -> None:
    # A VACUUM holds this lock for as long as it runs (hours, for one against wraparound); the
    # sequencer's refresh must not wait for it.
    storage = open_storage(pg_url)
    try:
        with storage.engine.write() as tx:
            tx.execute("CREATE TABLE held (id BIGINT PRIMARY KEY)")
        with psycopg.connect(pg_url) as holder:
            holder.execute("LOCK TABLE held IN SHARE UPDATE EXCLUSIVE MODE")
            done = threading.Event()
            refresher = threading.Thread(
                target=lambda: (storage.engine.refresh_statistics(["held"]), done.set())
            )
            refresher.start()
            refresher.join(30)  # only so that a refresh that waits fails here instead of hanging
            assert done.is_set(), "refresh_statistics waited for the lock"
            holder.rollback()
        refresher.join()
    finally:
        storage.close()


def test_relations_carry_any_text_as_it_is(engine: Engine) -> None:
    # Customer ids are the client's strings: what array literals and VALUES lists quote must
    # arrive as sent (a comma, quotes, braces, a backslash, the word NULL, an empty string).
    awkward = ["a,b", '"q"', "{x}", "back\\slash", "NULL", "", "ü ✓", "it's", " padded ", "\t\n", "[1:1]={a}"]
    awkward.append("x" * 100_000)
    with engine.write() as tx:
        tx.insert_rows("scratch", list(_COLUMNS), [(i, f"n{i}", 0) for i in range(11, len(awkward) + 1)])
        tx.update_rows("scratch", "id", {"name": "text"}, [(i + 1, name) for i, name in enumerate(awkward)])
    with engine.read() as tx:
        found = [
            (int(i), str(name))
            for relation, params in tx.relations([(n,) for n in [*awkward, "absent"]], ("text",), 3)
            for i, name in tx.execute(
                f"SELECT s.id, s.name FROM {relation} JOIN scratch s ON s.name = w.column1", params
            )
        ]
    assert sorted(found) == [(i + 1, name) for i, name in enumerate(awkward)]


def test_bulk_helpers_carry_nulls_and_extreme_integers_unchanged(engine: Engine) -> None:
    # PostgreSQL receives these as array literals written by Trueup: NULL must stay NULL, the
    # text "NULL" text, and the ends of the 64-bit range must arrive exact.
    with engine.write() as tx:
        tx.execute("CREATE TABLE optional (id BIGINT PRIMARY KEY, note TEXT, n BIGINT)")
        tx.insert_rows("optional", ("id", "note", "n"), [(i, "x", 0) for i in range(1, 5)])
        values = [(1, None, -(2**63)), (2, "NULL", 2**63 - 1), (3, "", None), (4, 'a"b\\c', -1)]
        assert tx.update_rows("optional", "id", {"note": "text", "n": "bigint"}, values) == 4
    with engine.read() as tx:
        stored = [tuple(row) for row in tx.execute("SELECT id, note, n FROM optional ORDER BY id")]
        assert stored == values
        match, params = tx.one_of("note", ["NULL", 'a"b\\c', "absent"], "text")
        assert sorted(int(r[0]) for r in tx.execute(f"SELECT id FROM optional WHERE {match}", params)) == [
            2,
            4,
        ]


def test_integer_arrays_refuse_anything_but_integers() -> None:
    # A string such as "1,2" in a literal would have become two elements.
    assert typed_array([1, None, -(2**63)], "bigint") == "{1,NULL,-9223372036854775808}"
    for bad in ("1,2", 1.0, Decimal(1)):
        with pytest.raises(TypeError):
            typed_array([1, bad], "bigint")
    with pytest.raises(TypeError, match="must be a str"):
        typed_array(["a", 1], "text")


def test_a_text_column_of_one_repeated_value_is_quoted_like_any_other() -> None:
    assert typed_array(['a"b\\'] * 3, "text") == '{"a\\"b\\\\","a\\"b\\\\","a\\"b\\\\"}'
    assert typed_array([None, None], "text") == "{NULL,NULL}"
    assert typed_array(["NULL", "NULL"], "text") == '{"NULL","NULL"}'
    assert typed_array([], "text") == "{}"
    with pytest.raises(TypeError):
        typed_array([1, 1], "text")


def test_postgresql_connections_are_named_after_their_process(pg_url: str) -> None:
    storage = open_storage(pg_url)
    try:
        with storage.engine.read() as tx:
            name = tx.scalar("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        assert name == f"trueup/{os.getpid()}"
        with storage.engine.write() as tx:
            tx.execute("CREATE TABLE scratch (id BIGINT PRIMARY KEY)")
        storage.engine.refresh_statistics(["scratch"])  # on a connection of its own, named apart
        # A name in the URL is kept.
        named = open_storage(pg_url + "&application_name=mine")
        try:
            with named.engine.read() as tx:
                assert tx.scalar("SELECT current_setting('application_name')") == "mine"
        finally:
            named.close()
    finally:
        storage.close()


def test_an_engine_says_whether_any_process_holds_a_role(database_url: str) -> None:
    """What an API-only host reports of the roles run elsewhere (/readyz): asked of another
    engine on the same database, without taking the role or standing in its holder's way."""
    holder, observer = open_storage(database_url), open_storage(database_url)
    try:
        assert observer.probe(1.0).roles_held == {"sequencer": False, "dispatcher": False}
        with holder.engine.try_leader_lock("sequencer") as held:
            assert held
            assert observer.probe(1.0).roles_held == {"sequencer": True, "dispatcher": False}
            assert holder.probe().roles_held["sequencer"]  # its holder's own engine sees it too
            with observer.engine.try_leader_lock("sequencer") as other:
                assert not other
            assert held.still_held()
        assert observer.probe(1.0).roles_held == {"sequencer": False, "dispatcher": False}
        with observer.engine.try_leader_lock("sequencer") as taken:  # asking left it free to take
            assert taken
            assert holder.probe().roles_held == {"sequencer": True, "dispatcher": False}
    finally:
        observer.close()
        holder.close()


def test_a_sqlite_role_lock_file_that_cannot_be_opened_is_not_known(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path}/t.db")
    try:
        loop = tmp_path / "t.db.sequencer.lock"
        loop.symlink_to(loop)  # opening it fails (ELOOP), as another user's file would
        assert storage.probe().roles_held == {"sequencer": None, "dispatcher": False}
    finally:
        storage.close()


def test_sqlite_probes_asked_at_once_do_not_take_each_other_for_a_holder(tmp_path: Path) -> None:
    """A probe asks with a shared lock, which another probe's does not refuse."""
    storage = open_storage(f"sqlite:///{tmp_path}/t.db")
    try:
        with storage.engine.try_leader_lock("dispatcher"):
            pass  # the lock file exists, free
        with open(tmp_path / "t.db.dispatcher.lock", "rb") as other_probe:
            fcntl.flock(other_probe.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            assert storage.probe().roles_held == {"sequencer": False, "dispatcher": False}
    finally:
        storage.close()


def test_a_standby_keeps_one_session_between_its_polls(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A standby asks for a role's lock every second: on the same session each time, not a new
    one (a backend fork and an authentication) per poll. When it leads, the lock ends with it."""
    opened: list[int] = []
    real_session = postgres.lock_session

    def counted(url: str, idle_timeout_s: float) -> psycopg.Connection[Any]:
        conn = real_session(url, idle_timeout_s)
        opened.append(conn.info.backend_pid)
        return conn

    monkeypatch.setattr(postgres, "lock_session", counted)
    holder, standby = open_storage(pg_url), open_storage(pg_url)
    try:
        with holder.engine.try_leader_lock("sequencer") as held:
            assert held
            for _ in range(3):
                with standby.engine.try_leader_lock("sequencer") as waiting:
                    assert not waiting
        assert len(opened) == 2  # the holder's session, and one for all three polls
        with standby.engine.try_leader_lock("sequencer") as leading:  # the holder let go
            assert leading
        assert len(opened) == 2  # it leads on the session it stood by on
        with holder.engine.try_leader_lock("sequencer") as again:  # and let go when it stopped
            assert again
    finally:
        standby.close()
        holder.close()


def test_a_holder_that_stops_asking_about_its_lock_loses_it_to_a_standby(pg_url: str) -> None:
    """A leader that is stopped (SIGSTOP, a frozen machine) asks nothing on its lock session:
    the server ends that session once it is idle past the timeout, and a standby takes the role.
    The holder, woken, finds the lock gone."""
    frozen, standby = open_storage(pg_url), open_storage(pg_url)
    frozen.engine.lock_idle_timeout_s = 0.5  # type: ignore[attr-defined]
    try:
        with frozen.engine.try_leader_lock("sequencer") as held:
            assert held
            deadline = time.monotonic() + 30  # a safety net: the server ends the session at 0.5 s
            while True:
                with standby.engine.try_leader_lock("sequencer") as taken:
                    if taken:
                        break
                assert time.monotonic() < deadline, "the idle holder kept the lock"
                time.sleep(0.1)
            assert not held.still_held()
    finally:
        standby.close()
        frozen.close()


def test_a_writer_stopped_inside_its_transaction_lets_the_others_have_its_locks(pg_url: str) -> None:
    """A process stopped (SIGSTOP, a frozen machine) inside a write transaction asks nothing
    more of the server: the server ends its session once the transaction has been idle past the
    timeout, so the seal's advisory lock (which the standby that took the sequencer role waits
    on) and the rows it locked go to the other processes. Woken, it finds nothing committed."""
    frozen, other = open_storage(pg_url), open_storage(pg_url)
    frozen.engine.transaction_idle_timeout_s = 0.5  # type: ignore[attr-defined]
    inside, wake = threading.Event(), threading.Event()
    outcome: list[BaseException | None] = []

    def stopped_inside_a_seal() -> None:
        try:
            with frozen.engine.write() as tx:
                frozen.engine.serialize(tx, "seal")
                tx.execute("UPDATE scratch SET n = 1 WHERE id = 1")
                inside.set()
                wake.wait(60)  # stopped: nothing reaches the server meanwhile
                tx.execute("UPDATE scratch SET n = 2 WHERE id = 1")
        except Exception as exc:  # kept for the assertion below
            outcome.append(exc)
        else:
            outcome.append(None)

    try:
        with other.engine.write() as tx:
            tx.execute("CREATE TABLE scratch (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)")
            tx.execute("INSERT INTO scratch (id, n) VALUES (1, 0)")
        stopped = threading.Thread(target=stopped_inside_a_seal)
        stopped.start()
        try:
            assert inside.wait(30)
            with other.engine.write() as tx:
                # A safety net: held by the stopped process for good, these would wait 30 s and fail.
                tx.execute("SET LOCAL lock_timeout = '30s'")
                other.engine.serialize(tx, "seal")
                tx.execute("UPDATE scratch SET n = 3 WHERE id = 1")
        finally:
            wake.set()
            stopped.join(30)
        assert len(outcome) == 1
        assert isinstance(outcome[0], StorageUnavailableError), outcome
        with other.engine.read() as tx:
            assert tx.scalar("SELECT n FROM scratch WHERE id = 1") == 3
    finally:
        other.close()
        frozen.close()


def test_a_postgresql_transaction_whose_statement_failed_never_reports_committed(pg_url: str) -> None:
    """A caller that catches a failed statement and goes on must not be told its transaction
    committed: PostgreSQL rolls the COMMIT back, while psycopg would call it committed."""
    storage = open_storage(pg_url)
    try:
        with storage.engine.write() as tx:
            tx.execute("CREATE TABLE scratch (id BIGINT PRIMARY KEY)")

        def insert_twice_and_go_on() -> None:
            with storage.engine.write() as tx:
                tx.execute("INSERT INTO scratch (id) VALUES (1)")
                with contextlib.suppress(IntegrityConflictError):
                    tx.execute("INSERT INTO scratch (id) VALUES (1)")

        with pytest.raises(StorageUnavailableError):
            insert_twice_and_go_on()
        with storage.engine.read() as tx:
            assert tx.scalar("SELECT COUNT(*) FROM scratch") == 0
    finally:
        storage.close()


def test_a_read_can_bound_its_wait_for_a_pooled_connection(pg_url: str) -> None:
    """With every pooled connection taken (as when the server is down and none can be made),
    a probe's read gives up after the wait it asked for, not the pool's 30 s."""
    storage = open_storage(pg_url, pool_size=2)
    taken = threading.Semaphore(0)
    release = threading.Event()

    def hold() -> None:
        with storage.engine.read():  # one connection each (a nested read would join this one)
            taken.release()
            release.wait(30)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for holder in holders:
        holder.start()
    try:
        assert taken.acquire(timeout=30) and taken.acquire(timeout=30)
        with pytest.raises(StorageUnavailableError, match=r"after 0\.20 sec"):
            storage.log.queue_stats(0.2)
    finally:
        release.set()
        for holder in holders:
            holder.join(30)
        storage.close()


def test_a_sqlite_database_opened_to_read_beside_a_server_leaves_its_wal_alone(tmp_path: Path) -> None:
    """`trueup audit` (and the bench's read-back) opened the server's file with a WAL
    checkpointer of their own, racing the server's rounds."""
    url = f"sqlite:///{tmp_path / 'trueup.db'}"
    open_storage(url).close()
    threads = {thread.ident for thread in threading.enumerate()}
    reader = open_storage(url, run_migrations=False, checkpoint_wal=False)
    try:
        with reader.engine.read() as tx:
            assert tx.scalar("SELECT COUNT(*) FROM tree_heads") == 0
        assert [thread.name for thread in threading.enumerate() if thread.ident not in threads] == []
    finally:
        reader.close()
    keeper = open_storage(url, run_migrations=False)
    try:
        started = [thread.name for thread in threading.enumerate() if thread.ident not in threads]
        assert started == ["trueup-sqlite-checkpoint"]
    finally:
        keeper.close()
