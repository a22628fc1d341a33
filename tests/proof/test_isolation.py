"""trueup.proof runs on the standard library and cryptography alone (for ``trueup verify``)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import trueup.proof

PROBE = """
import json, sys
before = set(sys.modules)
import trueup.proof
import trueup.proof.bundle, trueup.proof.canonical, trueup.proof.checkpoint
import trueup.proof.leaf, trueup.proof.merkle, trueup.proof.note
print(json.dumps(sorted(set(sys.modules) - before)))
"""

# What cryptography itself loads: its package, the cffi runtime and the OpenSSL binding.
CRYPTOGRAPHY_RUNTIME = {"cryptography", "_cffi_backend", "_openssl"}
# The I/O, clock and randomness modules DESIGN.md §4 keeps out of the proof layer.
FORBIDDEN = {"os", "time", "socket", "sqlite3", "subprocess", "random", "secrets", "io", "pathlib"}


def _loaded_by_import() -> list[str]:
    result = subprocess.run(
        [sys.executable, "-I", "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
    )
    modules: list[str] = json.loads(result.stdout)
    return modules


def test_importing_trueup_proof_loads_only_stdlib_cryptography_and_itself() -> None:
    loaded = _loaded_by_import()
    outside = [
        name
        for name in loaded
        if name.split(".")[0] not in sys.stdlib_module_names
        and name.split(".")[0] not in CRYPTOGRAPHY_RUNTIME
        and name != "trueup"
        and not name.startswith("trueup.proof")
    ]
    assert outside == []
    assert "trueup.proof.bundle" in loaded


def test_importing_trueup_proof_loads_no_other_part_of_trueup() -> None:
    loaded = _loaded_by_import()
    ours = {name for name in loaded if name.startswith("trueup")}
    assert ours == {"trueup"} | {name for name in ours if name.startswith("trueup.proof")}
    for name in ("fastapi", "pydantic", "orjson", "starlette", "psycopg", "httpx", "uvicorn"):
        assert name not in loaded


def test_the_proof_layer_imports_only_pure_stdlib_modules_cryptography_and_itself() -> None:
    # cryptography may load what it likes (it imports `random`, for one); our own source
    # may not, so check the import statements of every module of trueup.proof.
    package = Path(trueup.proof.__file__).parent
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name, set()).add(path.name)
    allowed = [
        name
        for name in found
        if name.startswith(("trueup.proof", "cryptography"))
        or (name.split(".")[0] in sys.stdlib_module_names and name.split(".")[0] not in FORBIDDEN)
    ]
    assert {name: found[name] for name in found if name not in allowed} == {}
    assert "hashlib" in found
