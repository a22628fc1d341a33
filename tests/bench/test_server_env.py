"""The server under test runs with the harness's settings only, and the PostgreSQL rows say
whether the server they ran on makes a commit durable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trueup.bench import postgres
from trueup.bench import server as server_module
from trueup.bench.report import Row
from trueup.bench.server import HARNESS_ENV, ServerUnderTest, server_environment
from trueup.bench.write_rows import with_settings


def test_the_servers_environment_leaves_out_trueup_variables_the_harness_did_not_set() -> None:
    base = {"PATH": "/bin", "TRUEUP_SEAL_BATCH": "5", "TRUEUP_RATE_LIMIT_PER_S": "100", "TRUEUP_X": ""}
    env, stripped = server_environment(base, HARNESS_ENV)
    assert env == {"PATH": "/bin", "TRUEUP_RATE_LIMIT_PER_S": "0"}
    assert stripped == ["TRUEUP_SEAL_BATCH", "TRUEUP_X"]
    assert server_environment({"HOME": "/h"}, HARNESS_ENV) == ({"HOME": "/h", **HARNESS_ENV}, [])


def test_the_server_process_is_launched_without_the_shells_trueup_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launched: dict[str, Any] = {}

    def popen(command: list[str], **kwargs: Any) -> object:
        launched.update(kwargs)
        return object()

    monkeypatch.setenv("TRUEUP_SEQUENCER_INTERVAL_MS", "1000")
    monkeypatch.setattr(server_module.subprocess, "Popen", popen)
    ServerUnderTest(tmp_path, env={"TRUEUP_EXTRA": "1"})._launch(["serve"], tmp_path / "log")
    env = launched["env"]
    assert "TRUEUP_SEQUENCER_INTERVAL_MS" not in env
    assert env["TRUEUP_EXTRA"] == "1"
    assert env["TRUEUP_RATE_LIMIT_PER_S"] == "0"


def test_postgres_rows_carry_the_servers_durability_settings() -> None:
    rows = with_settings([Row("a", "1", note="n"), Row("b", "2")], "fsync on, synchronous_commit on")
    assert [row.note for row in rows] == [
        "n; PostgreSQL fsync on, synchronous_commit on",
        "PostgreSQL fsync on, synchronous_commit on",
    ]


def test_the_durability_settings_are_read_from_the_server() -> None:
    url = postgres.base_url()
    reason = postgres.unreachable_reason(url)
    if reason is not None:
        pytest.skip(reason)
    shown = postgres.durability(url)
    assert shown.startswith("fsync ")
    assert ", synchronous_commit " in shown
    assert "unknown" not in shown
