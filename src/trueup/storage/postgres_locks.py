"""Session advisory locks: how one process of many holds a single-writer role on PostgreSQL.

Each role (the sequencer, the webhook dispatcher) is one advisory lock, held on a session of its
own (:func:`lock_session`); PostgreSQL releases it when the session ends, so a holder that dies
hands the role to a standby (:meth:`trueup.storage.postgres.PostgresEngine.try_leader_lock`).
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import psycopg

from trueup.storage.errors import StorageUnavailableError
from trueup.storage.postgres_urls import cannot_connect, named_url

__all__ = [
    "LOCK_IDLE_TIMEOUT_S",
    "advisory_lock_ids",
    "lock_session",
    "release_lock",
    "still_locked",
    "try_lock",
]


def advisory_lock_ids(key: int) -> tuple[int, int]:
    """``(classid, objid)`` under which ``pg_locks`` shows the advisory lock of 64-bit ``key``
    (its high and low 32 bits; ``objsubid`` is 1 for a 64-bit key)."""
    return (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF


LOCK_IDLE_TIMEOUT_S = 10.0
"""How long a role's lock session may stay idle before the server ends it, and the lock with it:
a holder asks about its lock every second, so only a stopped or frozen one is that idle."""


def lock_session(url: str, idle_timeout_s: float) -> psycopg.Connection[Any]:
    """A session of its own for an advisory lock. Whether the lock is still held is asked on
    it every second or so: over a network that stopped answering, the question fails within
    seconds (keepalives, a send timeout, a statement timeout) instead of waiting for TCP.

    A holder that stops asking (a process stopped, or frozen with its machine) would keep the
    lock for as long as its session lasts, and its role from every standby, while the kernel
    goes on answering keepalives for it. So the server ends the session once it has been idle
    ``idle_timeout_s`` (``idle_session_timeout``, PostgreSQL 14 on), and the lock with it.
    """
    try:
        conn = psycopg.connect(
            named_url(url),
            autocommit=True,
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
            tcp_user_timeout=10_000,
        )
        conn.execute("SET statement_timeout = 5000")  # the URL's own options stay as they are
    except psycopg.Error as exc:
        raise StorageUnavailableError(cannot_connect(url, str(exc))) from exc
    try:
        conn.execute(
            "SELECT set_config('idle_session_timeout', %s, false)", (str(int(idle_timeout_s * 1000)),)
        )
    except psycopg.errors.UndefinedObject:  # before PostgreSQL 14: held until the session ends
        pass
    except psycopg.Error as exc:
        conn.close()
        raise StorageUnavailableError(f"cannot set up a lock session: {exc}") from exc
    return conn


def try_lock(conn: psycopg.Connection[Any], key: int) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    return bool(row and row[0])


def release_lock(conn: psycopg.Connection[Any], key: int) -> None:
    """Let go of ``key`` before the session closes: PostgreSQL frees a closed session's locks
    only when its backend has exited, after ``close()`` returns, so a standby asking at once
    could still be refused. A session that no longer answers has nothing to let go of."""
    with suppress(psycopg.Error):
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def still_locked(conn: psycopg.Connection[Any], key: int) -> bool:
    """Whether the session of ``conn`` still answers and holds the advisory lock ``key`` (one
    that answers without it is no holder: a pooler that hands out another session, say)."""
    try:
        row = conn.execute(
            """SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
                   AND pid = pg_backend_pid() AND granted
                   AND classid = %s AND objid = %s AND objsubid = 1)""",
            advisory_lock_ids(key),
        ).fetchone()
    except psycopg.Error:
        return False
    return bool(row and row[0])
