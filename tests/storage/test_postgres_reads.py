"""PostgreSQL reads: a nested read joins the open one on its thread, and no exception path,
nor a read ended on another thread, leaves a transaction behind for the next read to join."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import psycopg
import pytest

from trueup.storage.engine import Tx
from trueup.storage.errors import StorageError, StorageUnavailableError
from trueup.storage.postgres import PostgresEngine


@pytest.fixture
def engine(pg_url: str) -> Iterator[PostgresEngine]:
    eng = PostgresEngine(pg_url, min_size=1, max_size=1)
    with eng.write() as tx:
        tx.execute("CREATE TABLE t (id BIGINT PRIMARY KEY)")
        tx.execute("INSERT INTO t VALUES (1)")
    yield eng
    eng.close()


def _count(engine: PostgresEngine, wait_s: float | None = None) -> int:
    with engine.read(wait_s) as tx:
        return int(tx.scalar("SELECT COUNT(*) FROM t"))


def _read_then(engine: PostgresEngine, then: Callable[[Tx], object]) -> None:
    with engine.read() as tx:
        tx.scalar("SELECT COUNT(*) FROM t")
        then(tx)


def _boom(tx: Tx) -> None:
    raise RuntimeError("boom")


def test_a_read_whose_body_raised_leaves_no_snapshot_behind(engine: PostgresEngine) -> None:
    with pytest.raises(RuntimeError):
        _read_then(engine, _boom)
    with engine.write() as tx:
        tx.execute("INSERT INTO t VALUES (2)")
    assert _count(engine) == 2


def test_a_read_whose_connection_died_leaves_no_dead_tx_behind(engine: PostgresEngine, pg_url: str) -> None:
    def killed(tx: Tx) -> None:
        pid = tx.scalar("SELECT pg_backend_pid()")
        with psycopg.connect(pg_url, autocommit=True) as killer:
            killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
        tx.scalar("SELECT 1")

    with pytest.raises(StorageError):
        _read_then(engine, killed)
    assert _count(engine) == 1  # a fresh connection, not the dead one


def test_a_read_ended_on_another_thread_leaves_no_tx_on_the_thread_that_opened_it(
    engine: PostgresEngine,
) -> None:
    """Latent: a generator holding a read across a yield (e.g. a streamed reply that Starlette
    iterates in its thread pool) may be finished on another thread. The finally clears that
    thread's local; the opening thread keeps a _PgTx whose connection went back to the pool, and
    its next read runs on a connection lent to someone else: here inside another thread's
    uncommitted write (a dirty read). Expected: a fresh read (503 here: the pool's one
    connection is busy), never the other transaction's rows."""

    def rows() -> Iterator[int]:
        with engine.read() as tx:
            yield int(tx.scalar("SELECT COUNT(*) FROM t"))

    gen = rows()
    results: list[object] = []
    opened, go_on, in_write, done = (threading.Event() for _ in range(4))

    def opening_thread() -> None:
        next(gen)  # the read opens on this thread
        opened.set()
        go_on.wait(10)
        try:
            results.append(_count(engine, 0.5))
        except StorageUnavailableError as exc:
            results.append(exc)

    def writer() -> None:
        with contextlib.suppress(RuntimeError), engine.write() as tx:  # the pool's only connection
            tx.execute("INSERT INTO t VALUES (99)")
            in_write.set()
            done.wait(10)
            _boom(tx)  # rolled back

    reader = threading.Thread(target=opening_thread)
    reader.start()
    assert opened.wait(10)
    closer = threading.Thread(target=gen.close)  # the read ends on another thread
    closer.start()
    closer.join()
    w = threading.Thread(target=writer)
    w.start()
    assert in_write.wait(10)
    go_on.set()
    reader.join(10)
    done.set()
    w.join(10)
    assert results and results[0] != 2, f"read saw another thread's uncommitted row: {results}"


def _plan(rows: list[tuple[object, ...]]) -> str:
    return "\n".join(str(row[0]) for row in rows)


def test_a_query_in_index_order_reads_the_index_where_the_planner_would_gather_and_sort(
    engine: PostgresEngine,
) -> None:
    # The sequencer's queue as the planner sees it under load: rows scattered over the table
    # (sealing rewrites each one elsewhere), and the last ANALYZE found 20 queued where 15,000
    # are. Autovacuum is off for the table, so no ANALYZE corrects it meanwhile.
    with engine.write() as tx:
        tx.execute(
            """CREATE TABLE q (seq BIGINT PRIMARY KEY, status TEXT NOT NULL, body TEXT NOT NULL)
               WITH (autovacuum_enabled = false)"""
        )
        tx.execute("CREATE INDEX q_queued ON q (seq) WHERE status = 'queued'")
        tx.execute(
            """INSERT INTO q SELECT g, CASE WHEN g <= 20 THEN 'queued' ELSE 'verified' END, repeat('x', 200)
               FROM generate_series(1, 20000) AS g ORDER BY md5(g::text)"""
        )
        tx.execute("ANALYZE q")
    with engine.write() as tx:
        tx.execute("UPDATE q SET status = 'queued' WHERE seq > 5000")
    query = "EXPLAIN SELECT seq, body FROM q WHERE status = 'queued' ORDER BY seq LIMIT 1000"
    with engine.read() as tx:
        guessed = _plan(tx.execute(query))
        ordered = _plan(tx.execute_in_index_order(query))
        after = _plan(tx.execute(query))
    assert "Bitmap Index Scan on q_queued" in guessed  # every queued row read, then sorted
    assert "Index Scan using q_queued" in ordered
    assert "Sort" not in ordered
    assert after == guessed  # the planner's settings are back for the rest of the transaction


def test_a_query_in_index_order_that_fails_raises_its_own_error(engine: PostgresEngine) -> None:
    with engine.read() as tx, pytest.raises(psycopg.errors.DivisionByZero):
        tx.execute_in_index_order("SELECT 1 / (id - 1) FROM t ORDER BY id")


def test_a_query_in_index_order_puts_the_planner_settings_back_as_they_were(engine: PostgresEngine) -> None:
    settings = (
        "SELECT current_setting('enable_bitmapscan'), current_setting('enable_seqscan'), "
        "current_setting('enable_sort')"
    )
    with engine.read() as tx:
        tx.execute("SELECT set_config('enable_seqscan', 'off', true)")  # an operator's, say
        assert tx.execute_in_index_order("SELECT id FROM t ORDER BY id") == [(1,)]
        assert tx.execute(settings) == [("on", "off", "on")]
