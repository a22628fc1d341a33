"""Schemathesis against our own OpenAPI document, on the real server process.

Bounded: a few examples per operation (TRUEUP_SCHEMATHESIS_EXAMPLES, default 25). Every
response must be non-5xx, documented, of the declared content type and valid against the
declared schema.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.server import ServerProcess, create_key

EXAMPLES = int(os.environ.get("TRUEUP_SCHEMATHESIS_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    data_dir: Path = tmp_path_factory.mktemp("schemathesis")
    key = create_key(data_dir, None)
    with ServerProcess(data_dir, None) as running:
        yield running, key


@pytest.fixture(scope="module")
def api_schema(server: tuple[ServerProcess, str]) -> schemathesis.BaseSchema:
    running, _ = server
    return schemathesis.openapi.from_url(f"{running.base_url}/openapi.json")


def test_every_operation_answers_within_its_contract(
    api_schema: schemathesis.BaseSchema, server: tuple[ServerProcess, str]
) -> None:
    # schemathesis' pytest plugin does not run under pytest 9 yet; drive Hypothesis directly.
    _, key = server
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    failures: list[str] = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(headers={"X-Api-Key": key}, checks=checks)

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            detail = "\n".join(line for line in str(exc).splitlines()[:40] if line.strip())
            failures.append(f"{operation.method.upper()} {operation.path}: {detail}")
    assert operations >= 20
    assert not failures, "\n\n".join(failures)


def test_every_route_that_takes_a_key_documents_its_rate_limit(server: tuple[ServerProcess, str]) -> None:
    running, _ = server
    paths = httpx.get(f"{running.base_url}/openapi.json").json()["paths"]
    keyed = [
        (path, method, op)
        for path, item in paths.items()
        for method, op in item.items()
        if "401" in op["responses"]
    ]
    assert len(keyed) > 20
    assert [(path, method) for path, method, op in keyed if "429" not in op["responses"]] == []
