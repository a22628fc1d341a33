"""A running server on PostgreSQL whose schema is renamed under it (dropped, or restored over):
its tables are gone, which is the database failing, not a bug: 503s, no traceback, and the
same server answers again once the schema is back."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import httpx
import psycopg

from tests.conftest import PG_URL
from tests.e2e.server import ServerProcess, create_key, wait_until

_ROUTES = ["/readyz", "/metrics", "/api/v1/balance/usage", "/api/v1/webhooks", "/api/v1/balance/derive/c1"]


def test_a_schema_renamed_under_a_running_server_is_503_then_served_again(
    tmp_path: Path, pg_url: str
) -> None:
    schema = unquote(pg_url).rpartition("search_path=")[2]
    key = create_key(tmp_path, pg_url)
    headers = {"X-Api-Key": key}
    write = {"items": [{"key": "k1", "accountId": "c1", "bits": 5}]}
    with ServerProcess(tmp_path, pg_url) as server:
        assert httpx.post(f"{server.base_url}/api/v1/writes", headers=headers, json=write).status_code == 202
        # the sequencer child is up and sealing (else it would meet the rename as it starts)
        wait_until(lambda: httpx.get(f"{server.base_url}/readyz").json()["data"]["sequencer"] == "leader")
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f"ALTER SCHEMA {schema} RENAME TO {schema}_away")
            try:
                for route in _ROUTES:
                    reply = httpx.get(f"{server.base_url}{route}", headers=headers, timeout=10)
                    assert reply.status_code == 503, (route, reply.text)
                refused = httpx.post(
                    f"{server.base_url}/api/v1/writes",
                    headers=headers,
                    json={"items": [{"key": "k2", "accountId": "c1", "bits": 1}]},
                )
                assert refused.status_code == 503 and refused.json()["code"] == "SERVICE_UNAVAILABLE"
                ready = httpx.get(f"{server.base_url}/readyz").json()["data"]
                assert ready["database"] == "unavailable", ready
            finally:
                admin.execute(f"ALTER SCHEMA {schema}_away RENAME TO {schema}")
        again = httpx.post(
            f"{server.base_url}/api/v1/writes",
            headers=headers,
            json={"items": [{"key": "k3", "accountId": "c1", "bits": 1}]},
        )
        assert again.status_code == 202, again.text
        assert httpx.get(f"{server.base_url}/readyz").status_code == 200
        log = server.log()
        assert "unhandled error" not in log and "Exception in ASGI" not in log, log
        # each refusal is one line naming the failure (the dispatcher's first failure in a row
        # is logged with its traceback, by design)
        refusals = [line for line in log.splitlines() if "storage unavailable err_" in line]
        assert len(refusals) == len(_ROUTES), log  # /readyz says it in its reply; the write is one
        assert all(line.endswith("does not exist") for line in refusals), refusals
