"""Plans (402) and rate limits (429) on the real server; rate limits across two processes."""

from __future__ import annotations

import re
import resource
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from tests.conftest import fresh_pg_schema
from tests.e2e.server import ServerProcess, create_key, free_port, trueup, write_and_wait_verified
from tests.service.conftest import principal_for, seal_all, write
from trueup.proof import CheckpointSigner, private_key_from_seed
from trueup.service.container import open_services
from trueup.service.settings import Settings
from trueup.service.signing import load_or_create_signer
from trueup.storage import open_storage
from trueup.storage.migrate import migrate
from trueup.storage.schema import MIGRATIONS, SCHEMA_VERSION

# A well-formed verifier key that signed nothing: for audits refused before any check.
UNUSED_KEY = CheckpointSigner(private_key_from_seed(bytes(32)), "unused").verifier_key()


def _items(prefix: str, count: int) -> dict[str, object]:
    return {"items": [{"key": f"{prefix}-{i}", "accountId": "plan-cust", "bits": 1} for i in range(count)]}


def test_a_write_past_the_monthly_allowance_is_402_and_stores_nothing(tmp_path: Path) -> None:
    key = create_key(tmp_path, None, "small", "--plan", "free")
    headers = {"X-Api-Key": key}
    with ServerProcess(tmp_path, None) as server:
        url = f"{server.base_url}/api/v1/writes"
        assert httpx.post(url, headers=headers, json=_items("a", 99)).status_code == 202
        refused = httpx.post(url, headers=headers, json=_items("b", 2))
        assert refused.status_code == 402
        assert refused.json()["code"] == "PLAN_LIMIT_EXCEEDED"
        assert refused.json()["message"].startswith(
            "this request would store 2 new deltas but the plan allows 100 a month and 99 are used in "
        )
        assert httpx.post(url, headers=headers, json=_items("c", 1)).status_code == 202
        last = httpx.post(url, headers=headers, json=_items("d", 1))
        assert last.status_code == 402
        assert last.json()["message"].startswith("this request would store 1 new delta but the plan allows")
        usage = httpx.get(f"{server.base_url}/api/v1/balance/usage", headers=headers).json()["data"]
        assert (usage["plan"], usage["allowance"], usage["used"], usage["remaining"]) == ("free", 100, 100, 0)


def test_an_operator_puts_a_tenant_on_another_plan_and_a_running_server_applies_it(tmp_path: Path) -> None:
    key = create_key(tmp_path, None, "small", "--plan", "free")
    headers = {"X-Api-Key": key}
    with ServerProcess(tmp_path, None, extra_env={"TRUEUP_KEY_CACHE_TTL_S": "0"}) as server:
        url = f"{server.base_url}/api/v1/writes"
        assert httpx.post(url, headers=headers, json=_items("a", 100)).status_code == 202
        assert httpx.post(url, headers=headers, json=_items("b", 1)).status_code == 402
        changed = trueup(["keys", "plan", "starter", "--tenant", "small"], tmp_path, None)
        assert (changed.returncode, changed.stdout) == (0, "tenant 'small' (live): plan free -> starter\n")
        assert httpx.post(url, headers=headers, json=_items("b", 1)).status_code == 202  # the same key
        usage = httpx.get(f"{server.base_url}/api/v1/balance/usage", headers=headers).json()["data"]
        assert (usage["plan"], usage["allowance"], usage["used"]) == ("starter", 100_000, 101)
    listed = trueup(["keys", "list"], tmp_path, None).stdout
    assert " starter " in listed and " free " not in listed
    for args, message in (
        (["gold", "--tenant", "small"], "trueup keys plan: plan: must be one of free, "),
        (["starter", "--tenant", "nobody"], "trueup keys plan: tenant: no tenant 'nobody' (live); "),
        (
            ["starter", "--tenant", "small", "--env", "test"],
            "trueup keys plan: tenant: no tenant 'small' (test); ",
        ),
    ):
        refused = trueup(["keys", "plan", *args], tmp_path, None)
        assert (refused.returncode, refused.stdout) == (2, ""), refused.stderr
        assert refused.stderr.startswith(message), refused.stderr


def test_a_plan_the_server_has_no_allowance_for_stores_nothing(tmp_path: Path) -> None:
    """A plan defined where the key was made but not where the server runs is refused, not
    taken as unlimited."""
    made = trueup(
        ["keys", "create", "--tenant", "goldco", "--plan", "gold"],
        tmp_path,
        None,
        {"TRUEUP_PLAN_ALLOWANCES": "gold=5"},
    )
    assert made.returncode == 0, made.stderr
    headers = {"X-Api-Key": made.stdout.strip()}
    with ServerProcess(tmp_path, None) as server:
        refused = httpx.post(f"{server.base_url}/api/v1/writes", headers=headers, json=_items("g", 1))
        assert (refused.status_code, refused.json()["code"]) == (402, "PLAN_LIMIT_EXCEEDED")
        assert refused.json()["message"] == (
            'the tenant\'s plan "gold" has no allowance on this server, so nothing is stored; '
            "the operator sets it in TRUEUP_PLAN_ALLOWANCES (gold=<count> or gold=unlimited)"
        )
        usage = httpx.get(f"{server.base_url}/api/v1/balance/usage", headers=headers).json()["data"]
        assert (usage["allowance"], usage["used"], usage["remaining"], usage["unlimited"]) == (0, 0, 0, False)
    with ServerProcess(tmp_path, None, extra_env={"TRUEUP_PLAN_ALLOWANCES": "gold=5"}) as server:
        accepted = httpx.post(f"{server.base_url}/api/v1/writes", headers=headers, json=_items("g", 5))
        assert accepted.status_code == 202, accepted.text


def test_every_item_of_a_request_larger_than_a_page_can_be_read(tmp_path: Path) -> None:
    headers = {"X-Api-Key": create_key(tmp_path, None)}
    with ServerProcess(tmp_path, None, extra_env={"TRUEUP_MAX_ITEMS": "1500"}) as server:
        accepted = httpx.post(f"{server.base_url}/api/v1/writes", headers=headers, json=_items("big", 1500))
        assert accepted.status_code == 202, accepted.text
        status = f"{server.base_url}/api/v1/writes/{accepted.json()['data']['requestId']}"
        last = httpx.get(status, headers=headers, params={"limit": 1000, "offset": 1400}).json()["data"]
        assert [item["index"] for item in last["items"]] == list(range(1400, 1500))
        assert [item["key"] for item in last["items"]][-1] == "big-1499"


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    key = create_key(tmp_path, None)
    env = {"TRUEUP_RATE_LIMIT_PER_S": "0.001", "TRUEUP_RATE_LIMIT_BURST": "3"}
    with ServerProcess(tmp_path, None, extra_env=env) as server:
        codes = [
            httpx.get(f"{server.base_url}/api/v1/balance/usage", headers={"X-Api-Key": key}) for _ in range(4)
        ]
        assert [reply.status_code for reply in codes] == [200, 200, 200, 429]
        limited = codes[-1]
        assert limited.json()["code"] == "RATE_LIMITED"
        assert int(limited.headers["Retry-After"]) == limited.json()["retryAfterSeconds"] >= 1


def test_rate_limits_hold_across_two_api_processes_on_postgresql(tmp_path: Path) -> None:
    env = {"TRUEUP_RATE_LIMIT_PER_S": "0.001", "TRUEUP_RATE_LIMIT_BURST": "4"}
    with fresh_pg_schema() as url:
        key = create_key(tmp_path, url)
        with (
            ServerProcess(tmp_path, url, extra_env=env) as one,
            ServerProcess(tmp_path, url, extra_env=env, extra_args=["--no-sequencer"]) as two,
        ):
            codes = [
                httpx.get(f"{server.base_url}/api/v1/balance/usage", headers={"X-Api-Key": key}).status_code
                for server in (one, two, one, two, one, two)
            ]
    assert codes == [200, 200, 200, 200, 429, 429]


def test_malformed_keys_are_401_not_500(tmp_path: Path) -> None:
    create_key(tmp_path, None)
    headers: list[bytes] = [
        b"pk_live_",
        b"pk_test_abcdefghijklmnop." + b"A" * 43,
        b"Bearer x",
        "pk_live_é".encode(),
        b"\xff\xfe",
        b"pk_live_aaaaaaaaaaaaaaaa." + b"A" * 5000,
    ]
    with ServerProcess(tmp_path, None) as server:
        for header in headers:
            reply = httpx.get(f"{server.base_url}/api/v1/balance/usage", headers={"X-Api-Key": header})
            assert reply.status_code == 401, header
            assert reply.json()["code"] == "INVALID_API_KEY"


def test_writes_get_503_with_retry_after_while_the_log_is_too_far_behind(tmp_path: Path) -> None:
    key = create_key(tmp_path, None)
    headers = {"X-Api-Key": key}
    env = {"TRUEUP_MAX_QUEUE_DEPTH": "10"}
    # No sequencer: nothing is sealed, so the queue only grows.
    with ServerProcess(tmp_path, None, extra_env=env, extra_args=["--no-sequencer"]) as server:
        url = f"{server.base_url}/api/v1/writes"
        accepted, refused = 0, None
        for n in range(200):  # the depth is read every 0.5 s, so a few more may get in first
            reply = httpx.post(url, headers=headers, json=_items(f"q{n}", 5))
            if reply.status_code != 202:
                refused = reply
                break
            accepted += 5
            time.sleep(0.02)
        assert refused is not None and refused.status_code == 503, refused
        assert refused.json()["code"] == "SERVICE_UNAVAILABLE"
        assert "deltas behind" in refused.json()["message"]
        assert "requestId" not in refused.json()  # no failure of the server's to look up
        assert int(refused.headers["Retry-After"]) >= 1
        assert accepted >= 10
        ready = httpx.get(f"{server.base_url}/readyz").json()["data"]
        assert ready["queueDepth"] == accepted, "the refused request stored nothing"
        assert httpx.get(f"{server.base_url}/api/v1/balance/usage", headers=headers).status_code == 200


def test_writes_are_held_back_while_the_queue_is_at_the_pace_depth(tmp_path: Path) -> None:
    key = create_key(tmp_path, None)
    headers = {"X-Api-Key": key}
    env = {"TRUEUP_QUEUE_PACE_DEPTH": "10", "TRUEUP_QUEUE_PACE_MAX_WAIT_S": "0.5"}
    # No sequencer: the queue never falls below the pace depth, so a write waits the longest
    # wait and is then stored as usual.
    with ServerProcess(tmp_path, None, extra_env=env, extra_args=["--no-sequencer"]) as server:
        url = f"{server.base_url}/api/v1/writes"
        assert httpx.post(url, headers=headers, json=_items("first", 10)).status_code == 202
        time.sleep(0.6)  # the depth read for the first write (0) is kept for 0.5 s
        started = time.monotonic()
        held = httpx.post(url, headers=headers, json=_items("held", 1))
        assert held.status_code == 202, held.text
        assert time.monotonic() - started >= 0.5
        assert httpx.get(f"{server.base_url}/readyz").json()["data"]["queueDepth"] == 11
        metrics = httpx.get(f"{server.base_url}/metrics").text
        assert "trueup_paced_writes_total 1.0" in metrics


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TRUEUP_SEAL_INTERVAL_MS", "fast", "TRUEUP_SEAL_INTERVAL_MS must be an integer, got 'fast'"),
        ("TRUEUP_PUBLIC_URL", "ledger.example.com", "TRUEUP_PUBLIC_URL must be an http(s) URL"),
        ("TRUEUP_PLAN_ALLOWANCES", "free", "TRUEUP_PLAN_ALLOWANCES: cannot read 'free'"),
        ("TRUEUP_DEFAULT_PLAN", "nosuch", "TRUEUP_DEFAULT_PLAN: 'nosuch' is not a plan"),
        ("TRUEUP_RATE_LIMIT_OVERRIDES", "garbage", "TRUEUP_RATE_LIMIT_OVERRIDES: cannot read 'garbage'"),
        ("TRUEUP_SEAL_BATCH_SIZE", "0", "TRUEUP_SEAL_BATCH_SIZE must be at least 1, got '0'"),
        (
            "TRUEUP_WEBHOOK_RETENTION_DAYS",
            "a month",
            "TRUEUP_WEBHOOK_RETENTION_DAYS must be an integer, got 'a month'",
        ),
        ("TRUEUP_LOG_ORIGIN", "bad origin", "TRUEUP_LOG_ORIGIN: key name 'bad origin' must not contain"),
        ("TRUEUP_DATABASE_URL", "mysql://x/y", "TRUEUP_DATABASE_URL must be sqlite:///<path> or"),
        ("TRUEUP_BODY_BYTES_IN_FLIGHT", "1000", "TRUEUP_BODY_BYTES_IN_FLIGHT must be at least 1,048,576"),
    ],
)
def test_a_setting_that_cannot_be_used_is_one_line_and_exit_2(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    for command in (["serve", "--port", "1"], ["audit"], ["keys", "list"]):  # refused before it binds
        done = trueup(command, tmp_path, None, extra_env={variable: value})
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"trueup {command[0]}: {message}"), done.stderr
        assert done.stderr.count("\n") == 1
        assert done.stdout == ""  # nothing before it (keys list printed its header first)
    assert not (tmp_path / "trueup.db").exists()  # stopped before it made anything


def test_audit_creates_nothing_where_there_is_no_log(tmp_path: Path) -> None:
    """Run in the wrong directory, an audit says so instead of auditing a new, empty database
    (or failing on its missing tables) and leaving it behind with a new signing key."""
    empty = tmp_path / "empty"
    empty.mkdir()
    done = trueup(["audit"], empty, None)
    assert (done.returncode, done.stderr) == (
        2,
        f"trueup audit: no database at {empty / 'trueup.db'} (give --data-dir or --database-url)\n",
    )
    create_key(tmp_path, None)  # a database, and no signing key yet (no server has run)
    done = trueup(["audit"], tmp_path, None)
    assert done.returncode == 2
    assert done.stderr.startswith(f"trueup audit: no signing key at {tmp_path / 'signing-key.pem'}")
    assert sorted(p.name for p in empty.iterdir()) == []
    assert not (tmp_path / "signing-key.pem").exists()


def test_audit_of_a_database_no_trueup_has_opened_says_so(tmp_path: Path) -> None:
    (tmp_path / "trueup.db").touch(mode=0o600)  # a SQLite file, empty
    with fresh_pg_schema() as pg_url:  # a PostgreSQL schema, empty
        for url in (None, pg_url):
            done = trueup(["audit", "--key", UNUSED_KEY], tmp_path, url)
            assert done.returncode == 2, done.stderr
            assert done.stderr.startswith("trueup audit: the database holds no Trueup log ("), done.stderr
        # The URL it names hides a password given as a query parameter, as one before the host.
        done = trueup(["audit", "--key", UNUSED_KEY], tmp_path, f"{pg_url}&password=pw-Secret-2")
        assert done.returncode == 2, done.stderr
        assert done.stderr.endswith("&password=***)\n"), done.stderr


def test_log_key_reads_the_logs_key_and_never_makes_one(tmp_path: Path) -> None:
    """A key made where the log's is not would belong to no log: clients pinning it would
    refuse every genuine checkpoint."""
    done = trueup(["log-key"], tmp_path, None)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(
        f"trueup log-key: no signing key at {tmp_path / 'signing-key.pem'}; give the log's --data-dir"
    )
    assert done.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
    signer = load_or_create_signer(tmp_path / "signing-key.pem", "localhost/trueup")
    done = trueup(["log-key"], tmp_path, None)
    assert (done.returncode, done.stdout) == (0, signer.verifier_key() + "\n")


def test_log_key_refuses_a_key_its_log_s_checkpoints_do_not_verify_under(tmp_path: Path) -> None:
    """The key is named after TRUEUP_LOG_ORIGIN: run with another origin than the server's,
    log-key printed a key (exit 0) that every proof of the log then failed against."""
    origin = "example.com/ledger"
    open_services(replace(Settings(), data_dir=tmp_path, log_origin=origin)).close()  # the first head
    done = trueup(["log-key"], tmp_path, None)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"trueup log-key: the signing key at {tmp_path / 'signing-key.pem'} with origin 'localhost/trueup' "
        f"did not sign this log's newest checkpoint: its checkpoints name the origin {origin!r} (set "
        f"TRUEUP_LOG_ORIGIN={origin}: every process and command of one log needs the same origin)\n"
    )
    done = trueup(["log-key"], tmp_path, None, extra_env={"TRUEUP_LOG_ORIGIN": origin})
    signer = load_or_create_signer(tmp_path / "signing-key.pem", origin)
    assert (done.returncode, done.stdout) == (0, signer.verifier_key() + "\n")
    (tmp_path / "signing-key.pem").unlink()
    load_or_create_signer(tmp_path / "signing-key.pem", origin)  # a key of no log
    done = trueup(["log-key"], tmp_path, None, extra_env={"TRUEUP_LOG_ORIGIN": origin})
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(
        f"trueup log-key: the signing key at {tmp_path / 'signing-key.pem'} with origin {origin!r} did not "
        "sign this log's newest checkpoint (tree size 0: "
    ), done.stderr


def test_log_key_prints_the_key_of_a_database_no_trueup_has_opened_yet(tmp_path: Path) -> None:
    """Pinning the key before the first serve: an empty PostgreSQL schema has no log to check."""
    signer = load_or_create_signer(tmp_path / "signing-key.pem", "localhost/trueup")
    with fresh_pg_schema() as pg_url:
        done = trueup(["log-key"], tmp_path, pg_url)
    assert (done.returncode, done.stdout, done.stderr) == (0, signer.verifier_key() + "\n", "")


def test_a_signing_key_that_cannot_be_read_is_one_line_and_exit_2(tmp_path: Path) -> None:
    create_key(tmp_path, None)  # a database to audit
    (tmp_path / "signing-key.pem").write_text("not a key\n")
    (tmp_path / "signing-key.pem").chmod(0o600)  # not shared: no warning before the one line
    for command in (["log-key"], ["audit"]):
        done = trueup(command, tmp_path, None)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(
            f"trueup {command[0]}: cannot read the signing key at {tmp_path / 'signing-key.pem'}: "
            "its 10 bytes are not an unencrypted PEM private key (cut short, or another file)"
        ), done.stderr
        assert done.stderr.count("\n") == 1
        assert "cryptography.io" not in done.stderr  # the library's paragraph, link and all
    # A key that is there but damaged is not one serve would create: it is restored.
    (tmp_path / "signing-key.pem").write_text("")
    done = trueup(["log-key"], tmp_path, None)
    assert (done.returncode, done.stderr) == (
        2,
        f"trueup log-key: cannot read the signing key at {tmp_path / 'signing-key.pem'}: the file is "
        "empty; restore the key file from a backup of this data directory\n",
    )


def _one_sealed_delta(data_dir: Path) -> None:
    """A log of one leaf in ``data_dir``, its signing key beside it."""
    services = open_services(replace(Settings(), data_dir=data_dir))
    try:
        write(services, principal_for(services), {"key": "k", "accountId": "c", "bits": 5})
        seal_all(services)
    finally:
        services.close()


def test_log_key_without_its_key_file_beside_a_log_says_to_copy_it(tmp_path: Path) -> None:
    """serve would refuse to start there: creating the key is no way out."""
    _one_sealed_delta(tmp_path)
    (tmp_path / "signing-key.pem").unlink()
    done = trueup(["log-key"], tmp_path, None)
    assert done.returncode == 2
    assert done.stderr.endswith(
        "; the database holds a log of 1 leaves, signed with its key: copy the key file from the "
        "log's other hosts or restore it from a backup\n"
    ), done.stderr


def test_audit_of_an_older_or_newer_schema_says_so(tmp_path: Path) -> None:
    """It reads the current schema and migrates nothing: one line, not its queries' errors."""
    url = f"sqlite:///{tmp_path / 'trueup.db'}"
    storage = open_storage(url, run_migrations=False)
    try:
        migrate(storage.engine, MIGRATIONS[:6])
    finally:
        storage.close()
    done = trueup(["audit", "--key", UNUSED_KEY], tmp_path, None)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        f"trueup audit: the database has schema version 6 and this Trueup reads {SCHEMA_VERSION}: audit "
        "it with the version that wrote it, or start this version's serve once to migrate it ("
    ), done.stderr
    storage = open_storage(url)  # now current; then one migration ahead of this Trueup
    try:
        with storage.engine.write() as tx:
            tx.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'x', 'now')")
    finally:
        storage.close()
    done = trueup(["audit", "--key", UNUSED_KEY], tmp_path, None)
    assert done.returncode == 2
    assert (
        f"the database has schema version 99, newer than this Trueup knows ({SCHEMA_VERSION})" in done.stderr
    )
    done = trueup(["keys", "list"], tmp_path, None)  # and the other commands: one line, exit 1
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("trueup keys: the database has schema version 99, newer than")


def test_a_failed_audit_names_the_first_mismatch_and_exits_1(tmp_path: Path) -> None:
    services = open_services(replace(Settings(), data_dir=tmp_path))
    try:
        who = principal_for(services)
        write(services, who, *[{"key": f"k{i}", "accountId": "c", "bits": 1} for i in range(40)])
        seal_all(services)
        with services.storage.engine.write() as tx:  # an edit behind the log's back
            tx.execute("UPDATE deltas SET amount = 2 WHERE leaf_index = 33")
    finally:
        services.close()
    done = trueup(["audit"], tmp_path, None)
    assert done.returncode == 1
    assert done.stderr.startswith("audit FAILED: leaf a_33: "), done.stderr


def test_audit_with_a_key_file_of_another_log_fails_as_a_mismatch_and_one_cut_short_is_refused(
    tmp_path: Path,
) -> None:
    """Heads the key file did not sign are the audit's to report (exit 1), as README.md says: a
    wrong key file and heads replaced behind the log's back look the same to it. A key file it
    cannot read is a command asked wrongly (exit 2)."""
    _one_sealed_delta(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    load_or_create_signer(other / "signing-key.pem", "localhost/trueup")
    done = trueup(["audit"], tmp_path, None, {"TRUEUP_SIGNING_KEY": str(other / "signing-key.pem")})
    assert done.returncode == 1
    assert done.stderr.startswith("audit FAILED: tree head 0: checkpoint signature: unknown key"), done.stderr
    assert "(the first head: audit with the log's own key, its key file or --key;" in done.stderr
    cut = tmp_path / "cut.pem"
    cut.write_bytes((tmp_path / "signing-key.pem").read_bytes()[:60])
    cut.chmod(0o600)
    done = trueup(["audit"], tmp_path, None, {"TRUEUP_SIGNING_KEY": str(cut)})
    assert done.returncode == 2
    assert done.stderr.startswith(f"trueup audit: cannot read the signing key at {cut}: "), done.stderr
    assert "restore the key file from a backup of this data directory" in done.stderr


def test_audit_takes_its_key_from_a_file_and_refuses_what_is_no_key(tmp_path: Path) -> None:
    services = open_services(replace(Settings(), data_dir=tmp_path))
    try:
        write(services, principal_for(services), {"key": "k", "accountId": "c", "bits": 5})
        seal_all(services)
        key_file = tmp_path / "log.key"
        key_file.write_text(services.log.verifier_key + "\n")
    finally:
        services.close()
    done = trueup(["audit", "--key", str(key_file)], tmp_path, None)
    assert done.returncode == 0, done.stderr
    for key, problem in [
        ("garbage", "--key 'garbage' is neither a verifier key ("),
        ("", "--key is empty"),
        (str(tmp_path), f"cannot read the key file {tmp_path}: "),
    ]:
        done = trueup(["audit", "--key", key], tmp_path, None)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"trueup audit: {problem}"), done.stderr
        assert done.stderr.count("\n") == 1
    done = trueup(["audit"], tmp_path, None, {"TRUEUP_LOG_ORIGIN": "other.example/log"})
    assert done.returncode == 2
    assert done.stderr == (
        "trueup audit: this log's checkpoints name the origin 'localhost/trueup', and TRUEUP_LOG_ORIGIN "
        "is 'other.example/log': audit with TRUEUP_LOG_ORIGIN=localhost/trueup, or give --key\n"
    )


def test_keys_list_and_revoke_make_no_ledger_where_none_is(tmp_path: Path) -> None:
    mistyped = tmp_path / "dataa"
    # On PostgreSQL the data directory holds only the pepper: none is made, even where the
    # database cannot be reached (this one is never asked).
    unreachable = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"
    refusals = {
        None: f"no database at {mistyped / 'trueup.db'} (give --data-dir or --database-url)",
        unreachable: f"no data directory at {mistyped}: give --data-dir, the directory whose "
        "key-pepper this database's keys were issued with",
    }
    for database_url, refusal in refusals.items():
        for command in (["keys", "list"], ["keys", "revoke", "key_x"]):
            done = trueup(command, mistyped, database_url)
            assert (done.returncode, done.stdout) == (2, ""), done.stderr
            assert done.stderr == f"trueup {' '.join(command[:2])}: {refusal}\n"
    assert not mistyped.exists()
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    done = trueup(["keys", "create"], a_file, None)
    assert done.returncode == 2
    assert done.stderr.startswith(f"trueup keys create: cannot use the data directory {a_file}: ")


def test_a_pepper_that_cannot_be_read_is_one_line(tmp_path: Path) -> None:
    create_key(tmp_path, None)
    (tmp_path / "key-pepper").unlink()
    (tmp_path / "key-pepper").mkdir(mode=0o700)  # unreadable as a file, even to root
    done = trueup(["keys", "list"], tmp_path, None)
    assert done.returncode == 1, done.stderr
    assert done.stderr == (
        f"trueup keys: cannot read the API key pepper at {tmp_path / 'key-pepper'}: Is a directory\n"
    )


def test_serve_on_a_port_in_use_says_so_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = trueup(["serve", "--port", str(port)], tmp_path / "new", None)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"trueup serve: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert not (tmp_path / "new").exists()  # no first key printed, no log made


@pytest.mark.parametrize("port", ["0", "65536", "99999", "http"])
def test_serve_takes_only_a_port_it_can_listen_on(tmp_path: Path, port: str) -> None:
    """99,999 was taken modulo 65,536 by the resolver (the server listened on 34,463) and 0 on
    a port nobody is told of."""
    done = trueup(["serve", "--port", port], tmp_path / "new", None)
    assert done.returncode == 2
    assert done.stderr.endswith(f"argument --port: must be a port number 1-65535, got {port!r}\n")
    assert not (tmp_path / "new").exists()


def test_the_log_level_of_serve_holds_for_the_processes_it_starts(tmp_path: Path) -> None:
    """The sequencer's own process logged at info whatever --log-level said."""
    # A sealed write: the sequencer's process had taken its role, and said so if it would.
    with ServerProcess(tmp_path / "quiet", None) as server:  # --log-level warning
        write_and_wait_verified(server, create_key(server.data_dir, None), "quiet")
    assert " INFO " not in server.log(), server.log()
    with ServerProcess(tmp_path / "told", None, extra_args=["--log-level", "info"]) as server:
        write_and_wait_verified(server, create_key(server.data_dir, None), "told")
    assert "INFO trueup.service.roles: this process holds the sequencer role" in server.log()
    assert '"POST /api/v1/writes HTTP/1.1"' not in server.log()  # no access log unless asked


def test_access_log_writes_a_line_per_request_answered(tmp_path: Path) -> None:
    args = ["--log-level", "info", "--access-log"]
    with ServerProcess(tmp_path / "logged", None, extra_args=args) as server:
        key = create_key(server.data_dir, None)
        write_and_wait_verified(server, key, "logged")  # the write goes by the fast path
        refused = httpx.post(
            f"{server.base_url}/api/v1/writes?x=1", headers={"X-Api-Key": key}, json={"items": []}
        )
        assert refused.status_code == 400
        public, secret = key.split(".", 1)
        for query in (f"apiKey={key}", f"apiKey={public}%2E{secret}"):  # a key where it does not go
            assert httpx.get(f"{server.base_url}/api/v1/balance/usage?{query}").status_code == 400
        # Behind a proxy on 127.0.0.1 (trusted by default), the client it names, whichever
        # way the request was answered: the write by the protocol itself, the GET by the app.
        forwarded = {"X-Api-Key": key, "X-Forwarded-For": "203.0.113.9"}
        ids = {}
        for method, path, body in (("POST", "/api/v1/writes", {"items": []}), ("GET", "/healthz", None)):
            reply = httpx.request(method, f"{server.base_url}{path}", headers=forwarded, json=body)
            ids[method] = reply.headers["X-Request-Id"]
    lines = server.log().splitlines()
    assert any(
        "INFO uvicorn.access: 127.0.0.1:" in line
        and '"POST /api/v1/writes HTTP/1.1" 202 x-request-id=' in line
        for line in lines
    ), server.log()
    assert any(
        line.endswith(
            f'"POST /api/v1/writes?x=1 HTTP/1.1" 400 x-request-id={refused.headers["X-Request-Id"]}'
        )
        for line in lines
    ), server.log()
    assert secret not in server.log()
    assert f'"GET /api/v1/balance/usage?apiKey={public}.*** HTTP/1.1" 400' in server.log()
    assert any(
        line.endswith(f'203.0.113.9:0 - "POST /api/v1/writes HTTP/1.1" 400 x-request-id={ids["POST"]}')
        for line in lines
    ), server.log()
    assert any(
        line.endswith(f'203.0.113.9:0 - "GET /healthz HTTP/1.1" 200 x-request-id={ids["GET"]}')
        for line in lines
    ), server.log()
    assert not any(key in line for line in lines)  # the key travels in a header, never logged


def _post_raw(port: int, path: str, length: int, sent: int, key: str) -> socket.socket:
    """A connection that has sent a POST's head (``Content-Length: length``) and ``sent`` bytes
    of its body."""
    connection = socket.create_connection(("127.0.0.1", port))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    connection.sendall(head.encode() + b" " * sent)
    return connection


def _status(connection: socket.socket) -> int:
    connection.settimeout(30)
    reply = b""
    while b"\r\n" not in reply:
        part = connection.recv(65536)
        assert part, reply
        reply += part
    return int(reply.split(b" ", 2)[1])


def test_bodies_still_arriving_are_held_up_to_a_bound_for_the_process_and_each_tenant(tmp_path: Path) -> None:
    """Each body was bounded, but not how many came at once: 400 connections each sending all but
    the last bytes of a 1 MiB body took the API process from 74 to 566 MB. Past
    TRUEUP_BODY_BYTES_IN_FLIGHT a body still arriving is a 503 with Retry-After, and past one
    tenant's share (a quarter, or one body of the largest size) a 429: a tenant's key alone
    cannot hold the whole bound and shut the others out. Once the bodies are gone, the same
    requests are read again."""
    env = {"TRUEUP_MAX_BODY_BYTES": "100000", "TRUEUP_BODY_BYTES_IN_FLIGHT": "150000"}
    with ServerProcess(tmp_path, None, extra_env=env) as server:
        mallory = create_key(server.data_dir, None, "mallory", "--read-only")
        acme = create_key(server.data_dir, None, "acme")
        held = _post_raw(server.port, "/api/v1/balance/compare", 100_000, 90_000, mallory)  # never finished
        try:
            _refused_while_held(server, mallory, acme)
        finally:
            held.close()  # the held body ends with its connection, and its bytes are given back
        for _ in range(200):
            again = [_compare(server, key, 61_000).status_code for key in (mallory, acme)]
            if again == [400, 400]:
                break
            time.sleep(0.05)
        assert again == [400, 400]  # read whole, then refused for what they say


def _compare(server: ServerProcess, key: str, size: int) -> httpx.Response:
    """A compare (not a write, which the protocol may answer itself) whose body is ``size`` spaces."""
    headers = {"X-Api-Key": key, "Content-Type": "application/json"}
    return httpx.post(f"{server.base_url}/api/v1/balance/compare", headers=headers, content=b" " * size)


def _refused_while_held(server: ServerProcess, mallory: str, acme: str) -> None:
    # The tenant holding 90,000 bytes is past its share of 100,000 with 61,000 more: tried until
    # the server has read those 90,000 (a few ms).
    statuses = []
    for _ in range(200):
        with _post_raw(server.port, "/api/v1/balance/compare", 61_000, 61_000, mallory) as other:
            statuses.append(_status(other))
        if statuses[-1] == 429:
            break
        time.sleep(0.05)
    assert statuses[-1] == 429, statuses
    own = _compare(server, mallory, 61_000)
    assert (own.status_code, own.headers["Retry-After"]) == (429, "1")
    said = re.fullmatch(
        r"this tenant's requests hold ([\d,]+) bytes of bodies still arriving at this server process, "
        r"and 61,000 more would pass its share \(100,000: a quarter of TRUEUP_BODY_BYTES_IN_FLIGHT, "
        r"at least TRUEUP_MAX_BODY_BYTES\); "
        r"retry once they have come",
        own.json()["message"],
    )
    assert said is not None, own.json()
    assert 89_000 < int(said.group(1).replace(",", "")) <= 90_000  # the held body, as read so far
    # Another tenant has its own share, but not past what the process holds at once.
    other = _compare(server, acme, 61_000)
    assert (other.status_code, other.headers["Retry-After"]) == (503, "1")
    assert re.fullmatch(
        r"this server process holds [\d,]+ bytes of request bodies still arriving, and 61,000 more "
        r"would pass the most it holds at once \(150,000, TRUEUP_BODY_BYTES_IN_FLIGHT\); retry shortly",
        other.json()["message"],
    ), other.json()
    assert _compare(server, acme, 60_000).status_code == 400  # fits beside the held body


def test_what_a_client_sends_never_splits_a_log_line_or_a_message(tmp_path: Path) -> None:
    """A next-line (U+0085) in the client a trusted proxy names was logged as it was, and so were
    a line separator or a terminal's escapes in a path a failure was logged with: a reader of the
    log (and Python's splitlines) saw a forged line. A 404 dropped a line feed from the path it
    named and sent a right-to-left override as it was, and named a 60 KB path whole."""
    args = ["--log-level", "info", "--access-log"]
    with ServerProcess(tmp_path / "logged", None, extra_args=args) as server:
        forged = {"X-Forwarded-For": b"203.0.113.9\x85FORGED LINE"}
        assert httpx.get(f"{server.base_url}/healthz", headers=forged).status_code == 200
        odd = httpx.get(f"{server.base_url}/api/v1/nothing/a%0Ab%E2%80%A8c%E2%80%AEd%1B[2K")
        long = httpx.get(f"{server.base_url}/api/v1/{'x' * 60_000}")
    assert odd.status_code == 404
    assert odd.json()["message"] == 'no route GET "/api/v1/nothing/a\\nb\\u2028c\\u202ed\\u001b[2K"'
    assert long.status_code == 404
    assert long.json()["message"] == f'no route GET "/api/v1/{"x" * 189}..."'
    log = server.log()
    assert '203.0.113.9\\u0085FORGED LINE:0 - "GET /healthz HTTP/1.1" 200' in log, log
    assert all(line.isprintable() for line in log.splitlines()), log
    assert not any(line.startswith("FORGED") for line in log.splitlines()), log


def test_a_postgresql_server_that_is_not_there_is_said_at_once_with_its_cause(tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # free, and nothing listens on it
    done = trueup(["keys", "list"], tmp_path, f"postgresql://postgres@127.0.0.1:{port}/none")
    assert done.returncode == 1
    # It names the URL it tried, which the settings chose (a variable may stand behind it).
    assert done.stderr.startswith(
        f"trueup keys: cannot connect to PostgreSQL at postgresql://postgres@127.0.0.1:{port}/none: "
    )
    assert "refused" in done.stderr
    assert done.stderr.count("\n") == 1


def test_a_postgresql_schema_that_does_not_exist_is_said_in_one_line(tmp_path: Path) -> None:
    with fresh_pg_schema() as url:  # a server that is there: only the schema is missing
        missing = url.replace("search_path%3Dtrueup_test_", "search_path%3Dtrueup_gone_")
        assert missing != url
        for command in (["keys", "create"], ["sequencer"], ["serve", "--port", str(free_port())]):
            done = trueup(command, tmp_path, missing)
            assert done.returncode == 1, done.stderr
            assert "cannot connect to PostgreSQL at postgres" in done.stderr, done.stderr
            assert "no schema of its search_path (trueup_gone_" in done.stderr, done.stderr
            assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr


def test_keys_create_says_once_that_the_variable_chose_the_database(tmp_path: Path) -> None:
    live = tmp_path / "live" / "trueup.db"
    done = trueup(
        ["keys", "create", "--tenant", "acme"],
        tmp_path / "keys-only",
        None,
        extra_env={"TRUEUP_DATABASE_URL": f"sqlite:///{live}"},
    )
    assert done.returncode == 0 and done.stdout.startswith("pk_live_"), done.stderr
    assert done.stderr.count("trueup: the database is TRUEUP_DATABASE_URL's") == 1, done.stderr


def test_an_empty_data_dir_flag_is_refused_rather_than_read_as_the_working_directory(tmp_path: Path) -> None:
    for command in (["keys", "create"], ["serve"], ["audit"]):
        done = subprocess.run(
            [sys.executable, "-m", "trueup.cli.main", *command, "--data-dir", ""],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert "--data-dir: must name a directory, got an empty value" in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_sqlite_database_whose_directory_cannot_be_made_is_said_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("a file where a directory should be")
    path = tmp_path / "afile" / "trueup.db"
    url = f"sqlite:///{path}"
    for command in (["keys", "create"], ["sequencer"], ["dispatcher"], ["serve", "--port", str(free_port())]):
        done = trueup(command, tmp_path, url)
        assert done.returncode == 1, done.stderr
        assert (
            f"cannot create the SQLite database sqlite:///{tmp_path / 'afile' / 'trueup.db'}: " in done.stderr
        )
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:pw-Secret-1@[::1/trueup",  # libpq quotes the whole URL
        "postgresql://postgres:pw-Secret-1%zz@127.0.0.1/trueup",  # or the part it stopped at
        "postgresql://postgres:pw-Secret-1 x@127.0.0.1/trueup",
        "postgresql://postgres@[::1/trueup?password=pw-Secret-1",
    ],
)
def test_a_database_url_postgresql_cannot_read_is_named_without_its_password(
    tmp_path: Path, url: str
) -> None:
    """libpq's message on a URL it cannot parse quotes it, and stderr showed the password."""
    for command in (["keys", "list"], ["keys", "create"], ["serve", "--port", "48699"]):
        done = trueup(command, tmp_path, url)
        assert done.returncode == 1, done.stderr
        assert "cannot connect to PostgreSQL at postgres" in done.stderr and "***" in done.stderr, done.stderr
        assert "pw-Secret-1" not in done.stderr + done.stdout


def test_keys_create_refuses_a_plan_other_than_the_tenants(tmp_path: Path) -> None:
    create_key(tmp_path, None, "acme", "--plan", "starter")
    done = trueup(["keys", "create", "--tenant", "acme", "--plan", "free"], tmp_path, None)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "trueup keys create: plan: tenant 'acme' (live) exists on plan 'starter'; a new key cannot change "
        "it to 'free' (leave --plan out to issue a key on its plan; `trueup keys plan` changes a tenant's "
        "plan)\n"
    )
    create_key(tmp_path, None, "acme", "--plan", "starter")  # its own plan, or none given: a key
    create_key(tmp_path, None, "acme")
    for blank in ("", " "):  # it was taken as no --plan at all
        done = trueup(["keys", "create", "--tenant", "acme", "--plan", blank], tmp_path, None)
        assert (done.returncode, done.stdout) == (2, "")
        assert done.stderr == "trueup keys create: --plan: must name a plan (leave it out for the default)\n"


@pytest.mark.parametrize("name", ["a\nb", "c\x1b[31mred", "tab\there", " padded", "\u2028"])
def test_keys_create_refuses_a_tenant_name_that_would_break_the_key_list(tmp_path: Path, name: str) -> None:
    done = trueup(["keys", "create", "--tenant", name], tmp_path, None)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"trueup keys create: tenant: must be printable characters, no space at either end, got {name!r}\n"
    )
    create_key(tmp_path, None, "acme corp.")  # a space inside, and punctuation, are fine
    assert "acme corp." in trueup(["keys", "list"], tmp_path, None).stdout


def test_a_reader_that_went_away_ends_the_command_without_a_traceback(tmp_path: Path) -> None:
    """`trueup proof … | head` ended in a BrokenPipeError traceback."""
    create_key(tmp_path, None)
    assert trueup(["keys", "list"], tmp_path, None).returncode == 0
    command = [sys.executable, "-m", "trueup.cli.main", "keys", "list", "--data-dir", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # gone before the command writes (it takes far longer to start)
    with process.stderr:
        said = process.stderr.read()
    assert (process.wait(timeout=60), said) == (1, b"")


@pytest.mark.parametrize("workers", ["0", "257"])
def test_a_dispatcher_with_workers_out_of_range_is_refused(tmp_path: Path, workers: str) -> None:
    done = trueup(["dispatcher", "--workers", workers], tmp_path, None)
    assert done.returncode == 2
    assert "--workers must be 1 to 256 (each is a thread with connections of its own)" in done.stderr


@pytest.mark.parametrize("command", ["sequencer", "dispatcher"])
def test_a_metrics_port_that_cannot_be_used_is_said_before_anything_starts(
    tmp_path: Path, command: str
) -> None:
    done = trueup([command, "--metrics-port", "70000"], tmp_path, None)
    assert done.returncode == 2
    assert "--metrics-port must be 1 to 65535, got 70000" in done.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = trueup([command, "--metrics-port", str(port)], tmp_path, None)
    assert (done.returncode, done.stderr) == (
        1,
        f"trueup {command}: cannot listen on 127.0.0.1:{port} for --metrics-port: Address already in use\n",
    )
    assert not (tmp_path / "trueup.db").exists()


@pytest.mark.parametrize("workers", ["0", "65"])
def test_a_server_with_workers_out_of_range_is_refused_before_it_starts_any(
    tmp_path: Path, workers: str
) -> None:
    """`serve --workers 100000` went on starting processes by the hundred. Refused before
    anything else is looked at: the port is taken here, so that a server that let the count
    through stops at the port (exit 1) rather than starting the processes."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = trueup(["serve", "--port", str(port), "--workers", workers], tmp_path, None)
    assert (done.returncode, done.stderr) == (
        2,
        "trueup serve: --workers must be 1 to 64 (each is a process with database connections of its own)\n",
    )
    assert not (tmp_path / "trueup.db").exists()


@pytest.mark.parametrize("command", ["sequencer", "dispatcher", "serve"])
def test_a_data_directory_that_cannot_be_made_is_one_line_and_exit_1(tmp_path: Path, command: str) -> None:
    """A file where the data directory should be stopped `trueup sequencer` and `trueup
    dispatcher` with a FileExistsError traceback."""
    in_the_way = tmp_path / "data"
    in_the_way.write_text("not a directory")
    done = trueup([command, *(["--port", str(free_port())] if command == "serve" else [])], in_the_way, None)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"trueup {command}: "), done.stderr
    assert done.stderr.endswith(
        f"cannot use the data directory {in_the_way}: it is a file, not a directory\n"
    ), done.stderr
    assert done.stderr.count("\n") == 1


def _open_files_limit(pid: int) -> tuple[int, int]:
    """The soft and hard limit on open files of process ``pid``, as ``/proc`` tells them."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open-files line in /proc/{pid}/limits")


def test_serve_raises_its_open_file_limit_to_the_hard_limit(tmp_path: Path) -> None:
    """A shell or systemd unit gives 1,024 open files by default, and every connection takes one:
    out of them, new connections were accepted and closed without a reply or a log line. serve
    takes what the hard limit allows, and its children with it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 512:
        pytest.skip(f"the hard limit on open files here is {hard}: nothing to raise to")
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))  # the server inherits it
    try:
        server = ServerProcess(tmp_path, None).start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert server.process is not None
        raised = _open_files_limit(server.process.pid)[0]
        assert raised == (1 << 20 if hard == resource.RLIM_INFINITY else hard)
    finally:
        server.stop()
