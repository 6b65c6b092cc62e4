"""Finish the OpenAPI schema with what only the settings know: the configured limits and, when API_TOKEN is
set, the bearer scheme on the guarded routes (auth runs in middleware, so FastAPI cannot see it)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.config import LIMITS, Settings

BEARER = "bearerAuth"
#: The request bodies whose fields the data plane caps (service.config.LIMITS).
REQUEST_BODIES = ("GenerateRequest", "DatasetRequest", "Traverse")


def document_service(
    schema: dict[str, Any], settings: Settings, guarded: Iterable[tuple[str, str]]
) -> dict[str, Any]:
    """``guarded``: the ``(path, method)`` operations behind the token (the guard middleware decides)."""
    maxima = {field: getattr(settings, setting) for field, setting in LIMITS.items()}
    components = schema.setdefault("components", {})
    for component in REQUEST_BODIES:
        properties = components.get("schemas", {}).get(component, {}).get("properties", {})
        for field, maximum in maxima.items():
            if field in properties:
                _set_maximum(properties[field], maximum)
    for parameter in schema.get("paths", {}).get("/generate", {}).get("get", {}).get("parameters", []):
        if parameter.get("name") in maxima:
            _set_maximum(parameter["schema"], maxima[parameter["name"]])
    if settings.api_token is not None:
        components.setdefault("securitySchemes", {})[BEARER] = {
            "type": "http",
            "scheme": "bearer",
            "description": "The API_TOKEN the service was started with.",
        }
        for path, method in guarded:
            operation = schema.get("paths", {}).get(path, {}).get(method.lower())
            if operation is not None:
                operation["security"] = [{BEARER: []}]
    return schema


def _set_maximum(prop: dict[str, Any], maximum: int) -> None:
    # Optional fields are anyOf [integer, null]; the bound belongs on the integer branch.
    for branch in prop.get("anyOf", [prop]):
        if branch.get("type") == "integer":
            branch["maximum"] = maximum
