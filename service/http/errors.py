"""One error shape for every 4xx/5xx: ``{"detail": "<field>: <what is wrong>", "field": "<field>"}``, and
the Open Inference Protocol's ``{"error": "<field>: <what is wrong>"}`` under ``/v2`` (what its clients
parse).

The data plane refuses requests with :class:`~service.errors.RequestError`; FastAPI's validation errors
and Starlette's HTTP errors are reshaped to the same body here, so clients parse one format per protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import RequestError

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    detail: str = Field(examples=["n: Input should be less than or equal to 1024"])
    field: str | None = Field(
        None, description="The request field at fault, when there is one.", examples=["n"]
    )


class OipErrorBody(BaseModel):
    error: str = Field(examples=["label: 12 is not a class index of 'mnist-cgan' (0..9)"])


def is_oip(path: str) -> bool:
    """Whether ``path`` belongs to the Open Inference Protocol, whose errors are ``{"error": ...}``."""
    return path == "/v2" or path.startswith("/v2/")


def error_response(
    status: int,
    detail: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    oip: bool = False,
) -> JSONResponse:
    body = {"error": detail} if oip else {"detail": detail, "field": field}
    return JSONResponse(body, status_code=status, headers=headers)


_DESCRIPTIONS = {
    400: "Unreadable request body (not UTF-8, or a bad Content-Length).",
    401: "Missing or wrong bearer token (only when API_TOKEN is set).",
    404: "Unknown model, or a model version that is not loaded (the detail lists the loaded ones).",
    413: "Request body larger than MAX_BODY_BYTES (MAX_INFER_BODY_BYTES for inference), compressed or once "
    "decompressed.",
    415: "A Content-Encoding other than gzip, deflate or identity.",
    422: "Invalid field: wrong type, out of range, unknown label or format.",
    429: "Overloaded: MAX_CONCURRENCY busy and MAX_QUEUE full, or BODY_BUDGET_BYTES of request bodies held; "
    "retry after Retry-After seconds.",
    503: "Not ready (no model loaded), or queued longer than QUEUE_TIMEOUT_SECONDS; see Retry-After.",
}


def error_responses(*codes: int, oip: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these status codes, all with the :class:`ErrorBody` schema (the
    :class:`OipErrorBody` one for the Open Inference Protocol's routes)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {
            "model": OipErrorBody if oip else ErrorBody,
            "description": _DESCRIPTIONS.get(code, HTTPStatus(code).phrase),
        }
        if code == 429:
            entry["headers"] = {
                "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
            }
        if code == 401:
            entry["headers"] = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
        responses[code] = entry
    return responses


def field_name(loc: Sequence[int | str]) -> str:
    """``("body", "labels", 2)`` -> ``"labels[2]"``; the request part (body/query/path/header) is dropped."""
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else list(loc)
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or (str(loc[0]) if loc else "body")


def _message(error: Mapping[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        return f"invalid JSON ({error.get('ctx', {}).get('error', 'malformed')})"
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


async def _request_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestError)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return error_response(exc.status, exc.detail, exc.field, headers, oip=is_oip(request.url.path))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    fields = ["body" if e.get("type") == "json_invalid" else field_name(e.get("loc", ())) for e in errors]
    detail = (
        "; ".join(f"{f}: {_message(e)}" for f, e in zip(fields, errors, strict=True)) or "invalid request"
    )
    return error_response(422, detail, fields[0] if fields else None, oip=is_oip(request.url.path))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request, headers.get("Allow", ""))
    return error_response(exc.status_code, detail, None, headers, oip=is_oip(request.url.path))


def _allowed_methods(request: Request, route_allow: str) -> str:
    # Starlette's Allow names only the first route on the path; GET and POST /generate are two routes.
    operations = request.app.openapi().get("paths", {}).get(request.url.path)
    if not operations:
        return route_allow
    methods = {m.upper() for m in operations}
    if "GET" in methods:
        methods.add("HEAD")  # Starlette answers HEAD wherever it answers GET
    return ", ".join(sorted(methods))


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this response so the server logs the traceback; the client gets none of it.
    log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return error_response(500, "internal server error", oip=is_oip(request.url.path))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestError, _request_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
