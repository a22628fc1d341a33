"""The application's route table."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

from trueup.api.app import ROUTERS, create_app
from trueup.core.scopes import COMPARE_FIELDS, DERIVE_PARAMS, WINDOW_FIELDS
from trueup.service.balances import LOCK_FIELDS
from trueup.service.container import Services, open_services
from trueup.service.settings import Settings
from trueup.service.webhooks import ENDPOINT_FIELDS


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    opened = open_services(replace(Settings(), data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/t.db"))
    yield opened
    opened.close()


def test_every_get_route_answers_head_and_documents_only_get(services: Services) -> None:
    create_app(services)
    app = create_app(services)  # a second app from the same routers adds nothing twice
    routes = [route for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)]
    gets = {route.path: route for route in routes if "GET" in (route.methods or ())}
    heads = {route.path: route for route in routes if "HEAD" in (route.methods or ())}
    assert len(heads) == len([route for route in routes if "HEAD" in (route.methods or ())])
    assert len(gets) > 20 and set(gets) == set(heads)
    for path, head in heads.items():
        assert head.endpoint is gets[path].endpoint and not head.include_in_schema, path
    documented = app.openapi()["paths"]
    assert not any("head" in documented.get(path, {}) for path in heads)


def test_every_operation_documents_the_400_every_route_can_answer(services: Services) -> None:
    """An unknown query parameter is a 400 on every route (api.md, Errors), the probes too."""
    schema = create_app(services).openapi()
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, path_item in schema["paths"].items():
        for method, operation in path_item.items():
            documented = operation["responses"]["400"]["content"]["application/json"]["schema"]
            assert documented == error, (method, path)
            assert "422" not in operation["responses"], (method, path)
    assert "ErrorBody" in schema["components"]["schemas"]


def test_compare_documents_the_same_scope_fields_as_derive(services: Services) -> None:
    """Compare takes a time scope as derive does: its documented body names every field of it."""
    schema = create_app(services).openapi()["components"]["schemas"]["CompareBody"]
    scope_fields = set(DERIVE_PARAMS) - {"limit", "offset", "order"}
    assert scope_fields <= set(schema["properties"])
    assert schema["properties"]["timePreset"]["anyOf"][0]["enum"] == ["current_month", "custom"]


def test_the_bodies_that_refuse_other_fields_document_exactly_the_fields_taken(services: Services) -> None:
    """Any other field is refused: the document says so, and names the same fields (the
    webhook endpoint's creation too)."""
    schemas = create_app(services).openapi()["components"]["schemas"]
    bodies = (
        ("CompareBody", COMPARE_FIELDS),
        ("StatedMonthlyNet", WINDOW_FIELDS),
        ("CheckpointBody", LOCK_FIELDS),
        ("WebhookCreateBody", ENDPOINT_FIELDS),
    )
    for name, taken in bodies:
        assert list(schemas[name]["properties"]) == list(taken), name
        assert schemas[name]["additionalProperties"] is False, name


def test_derive_documents_the_values_its_query_takes(services: Services) -> None:
    """Derive refuses any other order, time preset, checkpoint type or period with a 400: its
    OpenAPI document names the values it takes, as compare's body does, not any text."""
    (operation,) = create_app(services).openapi()["paths"]["/api/v1/balance/derive/{customerId}"].values()
    schemas = {parameter["name"]: parameter["schema"] for parameter in operation["parameters"]}
    assert schemas["order"]["enum"] == ["asc", "desc"]
    assert schemas["timePreset"]["enum"] == ["current_month", "custom"]
    assert schemas["startingCheckpointType"]["enum"] == ["itemsRoot", "anchorId", "proofRoot", "recordId"]
    assert schemas["period"]["pattern"] == "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$"
