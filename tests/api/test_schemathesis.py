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
    CheckFunction,
    content_type_conformance,
    not_a_server_error,
    positive_data_acceptance,
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


def _failures(
    api_schema: schemathesis.BaseSchema,
    key: str,
    checks: list[CheckFunction],
    skipped: frozenset[str] = frozenset(),
) -> tuple[int, list[str]]:
    """How many operations ran (all but ``skipped``, "METHOD /path"), and each failing one."""
    failures: list[str] = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if f"{operation.method.upper()} {operation.path}" in skipped:
            continue
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
        # Schemathesis raises what its checks find as a BaseExceptionGroup, which is no Exception:
        # caught as one, the first failing operation would end the loop and hide the others.
        except (Exception, BaseExceptionGroup) as exc:
            detail = "\n".join(line for line in str(exc).splitlines()[:40] if line.strip())
            failures.append(f"{operation.method.upper()} {operation.path}: {detail}")
    return operations, failures


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
    operations, failures = _failures(api_schema, key, checks)
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


# Rules a JSON Schema cannot state, so the document cannot either: the write, derive and compare
# routes refuse some schema-valid inputs (a time before 1970, metadata past 4 KiB, a checkpoint
# with a time scope; a lock or a receipt names one whole month, by period or by dates), a month
# is locked only once over (or with "force"), a webhook URL must resolve to a public address,
# and some parameters bound each other (from <= to; id or url; startDate < endDate; an anchor's
# leaf inside the treeSize asked for).
_RULES_BEYOND_THE_SCHEMA = frozenset(
    {
        "POST /api/v1/writes",
        "POST /api/v1/balance/delta",
        "POST /api/v1/balance/delta/batch",
        "GET /api/v1/balance/derive/{customerId}",
        "POST /api/v1/balance/compare",
        "POST /api/v1/balance/checkpoint",
        "GET /api/v1/balance/checkpoints",
        "GET /api/v1/balance/receipt/{customerId}",
        "GET /api/v1/balance/invoice-proof/{customerId}",
        "POST /api/v1/webhooks",
        "DELETE /api/v1/webhooks",
        "GET /api/v1/log/proof/consistency",
        "GET /api/v1/log/proof/inclusion",
    }
)


def test_every_request_the_document_allows_is_accepted(
    api_schema: schemathesis.BaseSchema, server: tuple[ServerProcess, str]
) -> None:
    # Accepted: answered 2xx, or 404 for an id that is not there, never a 400 for a value the
    # document says is fine (an anchor id of "", a period of "0000-00").
    _, key = server
    operations, failures = _failures(api_schema, key, [positive_data_acceptance], _RULES_BEYOND_THE_SCHEMA)
    assert operations >= 18
    assert not failures, "\n\n".join(failures)
