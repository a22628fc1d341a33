"""The Makefile's `serve` target: what it would run (``make -n``), not run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _serve_command(*args: str, env: dict[str, str] | None = None) -> str:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    environment = {k: v for k, v in os.environ.items() if k not in ("DATA_DIR", "TRUEUP_DATA_DIR")}
    environment.update(env or {})
    printed = subprocess.run(
        [make, "-n", "-C", str(ROOT), "serve", *args],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    ).stdout
    (line,) = [line for line in printed.splitlines() if " serve --host " in line]
    return line


def test_make_serve_leaves_the_data_directory_to_the_server_unless_told() -> None:
    assert "--data-dir" not in _serve_command()  # the server's default, ./data
    assert "--data-dir" not in _serve_command(env={"TRUEUP_DATA_DIR": "/elsewhere"})  # so this counts
    assert _serve_command("DATA_DIR=./other").endswith("--port 8000 --data-dir ./other")
    assert "--port 8001" in _serve_command("PORT=8001")
