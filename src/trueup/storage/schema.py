"""The one schema definition: versioned migrations, applied in order on start.

Each migration is a list of DDL templates in the common SQL of both backends; type tokens
(``{BLOB}``, ``{BIGINT}``, ``{SERIAL_PK}``, ``{WITHOUT_ROWID}``) are expanded by the dialect. A
setting only PostgreSQL has (a table's fill factor) goes in ``Migration.postgresql_only``.
A migration, once released, is never edited: a change is a new version.

Amounts and balances are 64-bit integers in minor units. Times are canonical RFC 3339 text
(``YYYY-MM-DDTHH:MM:SS.ffffffZ``), which sorts correctly as a string.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GROWING_TABLES", "MIGRATIONS", "SCHEMA_VERSION", "Migration"]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    postgresql_only: tuple[str, ...] = ()
    """Statements only PostgreSQL runs, after ``statements``: settings SQLite has no form for."""


_V1 = (
    """CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        env TEXT NOT NULL,
        plan TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (name, env)
    )""",
    """CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants (id),
        secret_hash {BLOB} NOT NULL,
        read_only INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    )""",
    """CREATE TABLE write_requests (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        source TEXT NOT NULL,
        item_count INTEGER NOT NULL,
        stored_count INTEGER NOT NULL,
        pending_count INTEGER NOT NULL,
        accepted_at TEXT NOT NULL,
        verified_at TEXT
    )""",
    # Items of a request that repeated an existing key with identical content.
    """CREATE TABLE write_duplicates (
        request_id TEXT NOT NULL,
        item_index INTEGER NOT NULL,
        original_seq {BIGINT} NOT NULL,
        PRIMARY KEY (request_id, item_index)
    )""",
    """CREATE TABLE idempotency_keys (
        tenant_id TEXT NOT NULL,
        idem_key TEXT NOT NULL,
        route TEXT NOT NULL,
        body_hash {BLOB} NOT NULL,
        status_code INTEGER NOT NULL,
        response TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (tenant_id, idem_key)
    )""",
    """CREATE TABLE usage_months (
        tenant_id TEXT NOT NULL,
        period TEXT NOT NULL,
        accepted_count {BIGINT} NOT NULL,
        PRIMARY KEY (tenant_id, period)
    )""",
    # One row per accepted delta, in acceptance order (seq). The sequencer fills the
    # columns from leaf_index on when it seals the delta; they never change afterwards.
    #   cust_seq        1-based position among the customer's verified deltas (leaf order)
    #   running_balance sum of the customer's verified deltas up to and including this one
    #   month_seq       1-based position among the customer's verified deltas of `period`
    #   month_credits   sum of positive amounts of that customer-month up to this one
    #   month_debits    sum of negative amounts of that customer-month up to this one
    """CREATE TABLE deltas (
        seq {SERIAL_PK},
        tenant_id TEXT NOT NULL,
        request_id TEXT NOT NULL,
        item_index INTEGER NOT NULL,
        item_key TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        amount {BIGINT} NOT NULL,
        reason TEXT NOT NULL,
        metadata TEXT,
        occurred_at TEXT NOT NULL,
        period TEXT NOT NULL,
        accepted_at TEXT NOT NULL,
        salt {BLOB} NOT NULL,
        status TEXT NOT NULL,
        leaf_index {BIGINT},
        sealed_size {BIGINT},
        verified_at TEXT,
        failure TEXT,
        cust_seq {BIGINT},
        running_balance {BIGINT},
        month_seq {BIGINT},
        month_credits {BIGINT},
        month_debits {BIGINT}
    )""",
    "CREATE UNIQUE INDEX deltas_tenant_key ON deltas (tenant_id, item_key)",
    "CREATE UNIQUE INDEX deltas_request_item ON deltas (request_id, item_index)",
    "CREATE INDEX deltas_queued ON deltas (seq) WHERE status = 'queued'",
    "CREATE UNIQUE INDEX deltas_leaf ON deltas (leaf_index) WHERE leaf_index IS NOT NULL",
    """CREATE INDEX deltas_customer_leaf ON deltas (tenant_id, customer_id, leaf_index)
        WHERE leaf_index IS NOT NULL""",
    """CREATE INDEX deltas_customer_seq ON deltas (tenant_id, customer_id, cust_seq)
        WHERE leaf_index IS NOT NULL""",
    """CREATE INDEX deltas_customer_month ON deltas (tenant_id, customer_id, period, month_seq)
        WHERE leaf_index IS NOT NULL""",
    """CREATE INDEX deltas_customer_amount ON deltas (tenant_id, customer_id, amount, leaf_index)
        WHERE leaf_index IS NOT NULL""",
    """CREATE INDEX deltas_customer_time ON deltas (tenant_id, customer_id, occurred_at)
        WHERE leaf_index IS NOT NULL""",
    # RFC 9162 tree: every node of a perfect subtree, (level, index) covering leaves
    # [index * 2^level, (index + 1) * 2^level); level 0 holds the leaf hashes.
    """CREATE TABLE tree_nodes (
        level INTEGER NOT NULL,
        idx {BIGINT} NOT NULL,
        hash {BLOB} NOT NULL,
        PRIMARY KEY (level, idx)
    ) {WITHOUT_ROWID}""",
    """CREATE TABLE tree_heads (
        tree_size {BIGINT} PRIMARY KEY,
        root_hash {BLOB} NOT NULL,
        timestamp_ms {BIGINT} NOT NULL,
        checkpoint TEXT NOT NULL
    )""",
    "CREATE INDEX tree_heads_root ON tree_heads (root_hash)",
    """CREATE TABLE accounts (
        tenant_id TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        balance {BIGINT} NOT NULL,
        delta_count {BIGINT} NOT NULL,
        first_activity TEXT NOT NULL,
        last_activity TEXT NOT NULL,
        last_leaf_index {BIGINT} NOT NULL,
        PRIMARY KEY (tenant_id, customer_id)
    )""",
    """CREATE TABLE account_months (
        tenant_id TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        period TEXT NOT NULL,
        credits {BIGINT} NOT NULL,
        debits {BIGINT} NOT NULL,
        delta_count {BIGINT} NOT NULL,
        PRIMARY KEY (tenant_id, customer_id, period)
    )""",
)

_V2 = (
    # A period checkpoint locks one customer-month: later deltas for it are refused. Its
    # figures cover the deltas sealed before tree_size. proof_root = SHA-256(0x03 || nonce ||
    # MTH(the period's leaf hashes)): a capability (unguessable even for an empty period, and
    # never equal to a tree head's root) that shows the period's records to whoever holds it.
    """CREATE TABLE period_checkpoints (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        period TEXT NOT NULL,
        proof_root {BLOB} NOT NULL,
        nonce {BLOB} NOT NULL,
        tree_size {BIGINT} NOT NULL,
        opening_balance {BIGINT} NOT NULL,
        credits {BIGINT} NOT NULL,
        debits {BIGINT} NOT NULL,
        deltas_count {BIGINT} NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (tenant_id, customer_id, period)
    )""",
    "CREATE INDEX period_checkpoints_root ON period_checkpoints (proof_root)",
)

_V3 = (
    # A tenant's webhook endpoints. The secret is stored as issued (it must sign every
    # delivery); after a rotation the previous one also signs until previous_expires_at.
    # events: "*" (every event type) or a comma-separated list of event types.
    """CREATE TABLE webhook_endpoints (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        url TEXT NOT NULL,
        description TEXT NOT NULL,
        events TEXT NOT NULL,
        secret TEXT NOT NULL,
        previous_secret TEXT,
        previous_expires_at TEXT,
        created_at TEXT NOT NULL,
        rotated_at TEXT,
        deleted_at TEXT
    )""",
    "CREATE INDEX webhook_endpoints_active ON webhook_endpoints (tenant_id) WHERE deleted_at IS NULL",
    # The outbox: one row per event, written in the transaction that caused it (a seal, a
    # period lock). payload is the envelope {id, event, timestamp, data} as sent, byte for byte.
    """CREATE TABLE webhook_events (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at TEXT NOT NULL
    )""",
    # One delivery per (event, endpoint), fanned out in the same transaction as the event.
    #   attempts        every attempt made, ever
    #   round_attempts  attempts since the delivery was (re)queued; the retry schedule's count
    """CREATE TABLE webhook_deliveries (
        seq {SERIAL_PK},
        event_id TEXT NOT NULL,
        endpoint_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        round_attempts INTEGER NOT NULL,
        next_attempt_at TEXT,
        last_attempt_at TEXT,
        last_status_code INTEGER,
        last_error TEXT,
        delivered_at TEXT,
        created_at TEXT NOT NULL,
        UNIQUE (event_id, endpoint_id)
    )""",
    """CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
        WHERE status = 'pending'""",
    "CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant_id, seq)",
    "CREATE INDEX webhook_deliveries_tenant_status ON webhook_deliveries (tenant_id, status, seq)",
    "CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, status)",
    # Every attempt the dispatcher finished (an attempt cut short by a crash is not here and
    # is made again). status_code is NULL when no HTTP reply came (timeout, refused, DNS).
    """CREATE TABLE webhook_attempts (
        event_id TEXT NOT NULL,
        endpoint_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        duration_ms INTEGER NOT NULL,
        status_code INTEGER,
        error TEXT,
        PRIMARY KEY (event_id, endpoint_id, attempt)
    )""",
)

_V4 = (
    # Per-API-key token buckets shared by every process on one database (PostgreSQL); times
    # are seconds since the epoch from the database clock.
    """CREATE TABLE rate_buckets (
        key_id TEXT PRIMARY KEY,
        tokens DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        allowed BOOLEAN NOT NULL
    )""",
)

_V5 = (
    # Month lookups seek by leaf ("the month's last delta before leaf T", "newest first"):
    # index the month by leaf index instead of by month_seq.
    "DROP INDEX deltas_customer_month",
    """CREATE INDEX deltas_customer_period_leaf ON deltas (tenant_id, customer_id, period, leaf_index)
        WHERE leaf_index IS NOT NULL""",
)

_V6 = (
    # Items of a request that failed at sealing (a period locked after acceptance), so a
    # request's state does not depend on which page of its items one reads.
    "ALTER TABLE write_requests ADD COLUMN failed_count INTEGER NOT NULL DEFAULT 0",
    # Small named counters; "period_locks" tells the sequencer whether a lock landed while
    # it planned a seal without counting the checkpoint table.
    """CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value {BIGINT} NOT NULL
    )""",
)

_PER_CUSTOMER_INDEXES = (
    "deltas_customer_leaf",
    "deltas_customer_seq",
    "deltas_customer_period_leaf",
    "deltas_customer_amount",
    "deltas_customer_time",
)

_V7 = (
    # Each account gets a number, and each sealed delta carries its account's number: the five
    # per-customer indexes are keyed by it instead of by (tenant_id, customer_id). A seal adds
    # one entry per delta to each of them, and with the short key (a few bytes instead of two
    # strings of 20-130) each entry costs less to place and a seal writes fewer index pages:
    # in a model of a seal of 8,000 deltas over 1,000 customers, 24 instead of 41 µs and 8,400
    # instead of 15,100 WAL pages. Numbers are given by the sequencer when it opens an account
    # (one more than the largest so far), here in (tenant, customer) order.
    "ALTER TABLE accounts ADD COLUMN account_no {BIGINT}",
    """UPDATE accounts SET account_no = numbered.n
         FROM (SELECT tenant_id, customer_id,
                      ROW_NUMBER() OVER (ORDER BY tenant_id, customer_id) AS n FROM accounts) AS numbered
        WHERE accounts.tenant_id = numbered.tenant_id AND accounts.customer_id = numbered.customer_id""",
    "CREATE UNIQUE INDEX accounts_account_no ON accounts (account_no)",
    "ALTER TABLE deltas ADD COLUMN account_no {BIGINT}",
    """UPDATE deltas SET account_no = a.account_no FROM accounts a
        WHERE a.tenant_id = deltas.tenant_id AND a.customer_id = deltas.customer_id
          AND deltas.leaf_index IS NOT NULL""",
    *(f"DROP INDEX {name}" for name in _PER_CUSTOMER_INDEXES),
    "CREATE INDEX deltas_account_leaf ON deltas (account_no, leaf_index) WHERE leaf_index IS NOT NULL",
    "CREATE INDEX deltas_account_seq ON deltas (account_no, cust_seq) WHERE leaf_index IS NOT NULL",
    """CREATE INDEX deltas_account_period_leaf ON deltas (account_no, period, leaf_index)
        WHERE leaf_index IS NOT NULL""",
    """CREATE INDEX deltas_account_amount ON deltas (account_no, amount, leaf_index)
        WHERE leaf_index IS NOT NULL""",
    "CREATE INDEX deltas_account_time ON deltas (account_no, occurred_at) WHERE leaf_index IS NOT NULL",
)

_V8 = (
    # A request whose every item repeats a delta still queued when it came (a client's retry
    # racing the seal) has nothing of its own for a seal to count off. It waits here, and the
    # sequencer completes it (and sends its verification.completed) once none of those
    # originals is queued any more. Requests stored before this table are left as they were.
    """CREATE TABLE write_waits (
        request_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL
    )""",
)

_V9 = (
    # Migration 6 gave every request a failed_count of 0, also those whose items had failed at
    # sealing before it: such a request read "verified" while its items read "failed". Count
    # them now (a request that has failed items and a count of 0 has not been counted).
    """UPDATE write_requests SET failed_count = (
             SELECT COUNT(*) FROM deltas
              WHERE deltas.request_id = write_requests.id AND deltas.status = 'failed')
        WHERE failed_count = 0 AND id IN (SELECT request_id FROM deltas WHERE status = 'failed')""",
)

_V10 = (
    # Locks are counted since migration 6 (the sequencer's fence, and the audit's check that no
    # lock was deleted); the ones taken before it were not, so the audit could not notice one of
    # them deleted. Count every stored lock, never lowering a count (a deleted lock keeps it).
    """INSERT INTO counters (name, value)
         SELECT 'period_locks', COUNT(*) FROM period_checkpoints WHERE TRUE
       ON CONFLICT (name) DO UPDATE SET value = CASE WHEN excluded.value > counters.value
                                                     THEN excluded.value ELSE counters.value END""",
)

_V11 = (
    # Migration 8 left the requests stored before it as they were, among them a retry whose
    # every item repeated a delta still queued: it has no wait, so no seal completes it and its
    # verification.completed is never sent. Those whose originals are still queued (a retry
    # accepted just before the upgrade) wait now, and are completed as this version's are.
    """INSERT INTO write_waits (request_id, tenant_id)
         SELECT r.id, r.tenant_id FROM write_requests r
          WHERE r.stored_count = 0 AND r.verified_at IS NULL
            AND EXISTS (SELECT 1 FROM write_duplicates x JOIN deltas d ON d.seq = x.original_seq
                         WHERE x.request_id = r.id AND d.status = 'queued')
            AND NOT EXISTS (SELECT 1 FROM write_waits w WHERE w.request_id = r.id)""",
)

_TRIMMED_KEY = "ltrim(rtrim(idem_key, ' \t'), ' \t')"

_V12 = (
    # An Idempotency-Key is read without the spaces or tabs sent around it (RFC 9110); older
    # versions kept those after it as part of the key, so a retry sent the same way found no reply
    # after the upgrade and was stored again. Store such keys as they are read now, unless that
    # would make one of two stored keys (those stay as they were).
    f"""UPDATE idempotency_keys SET idem_key = {_TRIMMED_KEY}
         WHERE idem_key <> {_TRIMMED_KEY} AND {_TRIMMED_KEY} <> ''
           AND (tenant_id, {_TRIMMED_KEY}) IN (
               SELECT tenant_id, {_TRIMMED_KEY} FROM idempotency_keys
                GROUP BY tenant_id, {_TRIMMED_KEY} HAVING COUNT(*) = 1)""",
)

_V13 = (
    # The dispatcher prunes events past TRUEUP_WEBHOOK_RETENTION_DAYS, oldest first from a
    # cursor (created_at, id) (storage/webhook_pruning.py). Without this index each of its
    # batches read every event to find the oldest: a pass over a million events read them all
    # again for each batch of a few thousand.
    "CREATE INDEX webhook_events_created ON webhook_events (created_at, id)",
)

CLEAR_SECRETS = "clear_secrets"
"""The name under which ``counters`` marks a database whose secrets an older Trueup may have
kept in clear: the first process of this version to start seals them, then removes the mark."""

_V14 = (
    # Webhook secrets, and the reply of an endpoint's creation kept under its idempotency key,
    # are stored sealed with a key derived from the key pepper (storage/secret_box.py). Sealing
    # needs the pepper, which SQL does not have: a database that may hold such values in clear is
    # marked, and the server seals them as it starts. The version also keeps an older Trueup
    # away, which would sign deliveries with the sealed text for a secret.
    f"""INSERT INTO counters (name, value)
          SELECT '{CLEAR_SECRETS}', 1 WHERE EXISTS (SELECT 1 FROM webhook_endpoints)
              OR EXISTS (SELECT 1 FROM idempotency_keys WHERE route = 'POST /api/v1/webhooks')""",
)

_V15_POSTGRESQL = (
    # Every seal updates the account and month rows of the customers it seals for. At the default
    # fill factor (100) a table's pages are full, so the new version of a row goes to another page
    # and every index of the table gets an entry for it: in a model of seals of 1,000 deltas over
    # 1,000 customers, 11-21 % of these updates were heap-only (HOT) and the two upserts took 23-26
    # µs per sealed delta, about as long as the update of the deltas themselves. With 30 % of each
    # page left free, 96 % were, and the upserts took 14-17 µs. It applies to pages written from
    # now on: the rows of an existing database move to such pages as they are updated.
    "ALTER TABLE accounts SET (fillfactor = 70)",
    "ALTER TABLE account_months SET (fillfactor = 70)",
)

CLOSED_MONTHS_FROM = "closed_months_from"
"""The name under which ``counters`` keeps the tree size from which every seal kept the deltas of
months closed by a later lock out: a Trueup built before 2026-12-07 06:55 UTC let them in (it refused
only a locked month's own deltas), so ``trueup audit`` names those sealed before it in a warning
and those sealed from it on as a mismatch."""

_V16 = (
    # A lock closes the months before its own too (its opening balance sums them), and the
    # sequencer fails a delta of such a month; older versions sealed it. Record where the log was
    # at the upgrade (0 on a new database), so the audit can tell the two apart.
    f"""INSERT INTO counters (name, value)
          SELECT '{CLOSED_MONTHS_FROM}', COALESCE(MAX(tree_size), 0) FROM tree_heads WHERE TRUE
       ON CONFLICT (name) DO NOTHING""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "ledger, log and balances", _V1),
    Migration(2, "period checkpoints", _V2),
    Migration(3, "webhook endpoints, outbox, deliveries and attempts", _V3),
    Migration(4, "rate limit buckets", _V4),
    Migration(5, "month index by leaf", _V5),
    Migration(6, "request failure counts and counters", _V6),
    Migration(7, "account numbers key the per-customer indexes", _V7),
    Migration(8, "repeats waiting for their originals", _V8),
    Migration(9, "failures counted before migration 6", _V9),
    Migration(10, "locks counted before migration 6", _V10),
    Migration(11, "retries of queued deltas stored before migration 8 wait", _V11),
    Migration(12, "idempotency keys without the whitespace sent after them", _V12),
    Migration(13, "webhook events by time, for pruning", _V13),
    Migration(14, "webhook secrets sealed with the key pepper", _V14),
    Migration(15, "room on the pages of accounts and months for heap-only updates", (), _V15_POSTGRESQL),
    Migration(16, "where the log was when seals began to keep months closed by a later lock", _V16),
)
SCHEMA_VERSION = MIGRATIONS[-1].version
"""The schema this code reads and writes: the newest migration's version."""

# The tables that grow with the log, whose planner statistics the sequencer keeps up to date
# (Storage.refresh_statistics).
GROWING_TABLES = (
    "deltas",
    "write_requests",
    "write_duplicates",
    "idempotency_keys",
    "tree_nodes",
    "tree_heads",
    "accounts",
    "account_months",
    "period_checkpoints",
    "webhook_events",
    "webhook_deliveries",
    "webhook_attempts",
)
