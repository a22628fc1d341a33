"""Registering hand-decoded request bodies and shared error replies in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from trueup.api.schemas.common import ErrorBody

__all__ = ["errors", "install_openapi", "json_body"]

_REF = "#/components/schemas/{model}"
_BODY_MODELS: dict[str, type[BaseModel]] = {}


def json_body(model: type[BaseModel], description: str = "") -> dict[str, Any]:
    """``openapi_extra`` for a route that decodes ``model``'s shape itself."""
    _BODY_MODELS[model.__name__] = model
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}},
        }
    }


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Documented error replies, all in the one error envelope. A route that takes an API key
    (401) is rate limited per key too (429), whether or not the caller lists it; one that
    reads a JSON body (413) also times out on a body that does not arrive (408)."""
    documented = {*statuses, 500}
    if 401 in documented:
        documented.add(429)
    if 413 in documented:
        documented.add(408)
    return {status: {"model": ErrorBody, "description": "error"} for status in sorted(documented)}


def install_openapi(app: FastAPI) -> None:
    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault(ErrorBody.__name__, ErrorBody.model_json_schema(ref_template=_REF))
        refused = {
            "description": "error",
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=ErrorBody.__name__)}}},
        }
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.setdefault("responses", {})
                # Request validation errors are 400 VALIDATION_ERROR here (api/errors.py), never 422.
                responses.pop("422", None)
                # Every route refuses an unknown or repeated query parameter, and what the request
                # guard refuses (a NUL, an encoded slash, a header given twice): 400, in the envelope.
                responses.setdefault("400", refused)
                operation["responses"] = dict(sorted(responses.items()))
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        for name, model in _BODY_MODELS.items():
            model_schema = model.model_json_schema(ref_template=_REF)
            for def_name, definition in model_schema.pop("$defs", {}).items():
                components.setdefault(def_name, definition)
            components[name] = model_schema
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]  # FastAPI's documented override hook
