"""``/generate``: images of one label, as a PNG grid, a .npy array or JSON."""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from service.api.deps import resolve_label, resolve_model, resolve_seed
from service.api.schemas import GeneratedImages, GenerateQuery, GenerateRequest
from service.batching import Job
from service.errors import ApiError, error_responses
from service.rendering import MEDIA_TYPES, encode
from service.runtime import Runtime

# The hot path: no Depends() here. Each one costs FastAPI ~12 us to solve per request, a tenth of a small
# /generate; the runtime comes from app.state and the token/limits are checked in GuardMiddleware.
router = APIRouter(prefix="/generate", tags=["generate"])

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_HEADERS = {
    "X-Model": {"description": "Model name.", "schema": {"type": "string"}},
    "X-Model-Version": {"description": "Model version.", "schema": {"type": "integer"}},
    "X-Seed": {
        "description": "Seed of the first image; image i used seed + i.",
        "schema": {"type": "integer"},
    },
    "X-Label": {"description": "The label as a class index.", "schema": {"type": "integer"}},
}


def _responses(media_types: tuple[str, ...], *errors: int) -> dict[int | str, dict[str, Any]]:
    content = {
        "image/png": _BINARY,
        "application/x-npy": _BINARY,
        "application/json": {
            "schema": GeneratedImages.model_json_schema(ref_template="#/components/schemas/{model}")
        },
    }
    ok = {"description": "The images.", "headers": _HEADERS, "content": {m: content[m] for m in media_types}}
    return {200: ok, **error_responses(*errors)}


async def _generate(
    runtime: Runtime,
    label: int | str,
    n: int,
    seed: int | None,
    model_name: str | None,
    fmt: str,
    nrow: int | None,
    pad: int,
) -> Response:
    settings = runtime.settings
    if n > settings.max_n:
        raise ApiError(422, f"n: at most MAX_N ({settings.max_n}) images per request", "n")
    if nrow is not None and nrow > settings.max_n:
        raise ApiError(422, f"nrow: at most MAX_N ({settings.max_n})", "nrow")
    model = resolve_model(runtime, model_name)
    index = resolve_label(model, label)
    seed = resolve_seed(seed, n)
    encoder = functools.partial(encode, model, index, seed, fmt, nrow, pad, settings.png_compress_level)
    body = await runtime.batcher.submit(Job(model, index, n, seed, encoder))
    headers = {
        "X-Model": model.name,
        "X-Model-Version": str(model.version),
        "X-Seed": str(seed),
        "X-Label": str(index),
    }
    return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)


@router.post(
    "",
    response_class=Response,
    responses=_responses(
        ("image/png", "application/x-npy", "application/json"), 400, 401, 404, 413, 422, 429, 503
    ),
    summary="Generate images of one label",
)
async def generate(body: GenerateRequest, request: Request) -> Response:
    """Generate `n` images of `label`; `format` picks a PNG grid, a .npy array or JSON."""
    runtime = request.app.state.runtime
    return await _generate(
        runtime, body.label, body.n, body.seed, body.model, body.format, body.nrow, body.pad
    )


@router.get(
    "",
    response_class=Response,
    responses=_responses(("image/png",), 401, 404, 422, 429, 503),
    summary="PNG grid for <img src>",
)
async def generate_png(query: Annotated[GenerateQuery, Query()], request: Request) -> Response:
    """The PNG grid of `POST /generate`, addressable by URL."""
    q = query
    response = await _generate(request.app.state.runtime, q.label, q.n, q.seed, q.model, "png", q.nrow, q.pad)
    if q.seed is None:
        response.headers["Cache-Control"] = "no-store"  # a random seed: the next load must differ
    return response
