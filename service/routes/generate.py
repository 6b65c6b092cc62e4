"""``/generate``: images of one label, as a PNG grid, a .npy array or JSON."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from service import dataplane, formats
from service.http.errors import error_responses
from service.http.middleware import GuardedRoute, guarded
from service.http.schemas import GeneratedImages, GenerateQuery, GenerateRequest
from service.requests import ImageRequest

# The hot path: no Depends() here. Each one costs FastAPI ~12 us to solve per request, a tenth of a small
# /generate; the runtime comes from app.state and the token/limits are checked in GuardMiddleware.
router = APIRouter(prefix="/generate", tags=["generate"], route_class=GuardedRoute)

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_HEADERS = {
    "X-Model": {"description": "Model name.", "schema": {"type": "string"}},
    "X-Model-Version": {"description": "Model version.", "schema": {"type": "integer"}},
    "X-Seed": {
        "description": "Seed of the first image; image i used seed + i.",
        "schema": {"type": "integer"},
    },
    "X-Label": {"description": "The label as a class index.", "schema": {"type": "integer"}},
    "X-Acceptance-Rate": {
        "description": "With min_confidence: images kept / candidates judged (the seeds kept are in the "
        "json format's `seeds`).",
        "schema": {"type": "number"},
    },
    "X-Candidates": {
        "description": "With min_confidence: candidates judged, seed .. seed + X-Candidates - 1.",
        "schema": {"type": "integer"},
    },
}


def _responses(media_types: tuple[str, ...], *errors: int) -> dict[int | str, dict[str, Any]]:
    json_body = {"schema": GeneratedImages.model_json_schema(ref_template="#/components/schemas/{model}")}
    content = {m: json_body if m == "application/json" else _BINARY for m in media_types}
    ok = {"description": "The images.", "headers": _HEADERS, "content": content}
    return {200: ok, **error_responses(*errors)}


async def _generate(request: Request, images_request: ImageRequest) -> Response:
    images = await dataplane.images(request.app.state.runtime, images_request)
    headers = {
        "X-Model": images.model.name,
        "X-Model-Version": str(images.model.version),
        "X-Seed": str(images.seed),
        "X-Label": str(images.label),
    }
    if images.acceptance_rate is not None:
        headers["X-Acceptance-Rate"] = f"{images.acceptance_rate:.6g}"
        headers["X-Candidates"] = str(images.examined)
    return Response(images.body, media_type=images.media_type, headers=headers)


@router.post(
    "",
    response_class=Response,
    responses=_responses(
        tuple(f.media_type for f in formats.IMAGE_FORMATS.values()), 400, 401, 404, 413, 422, 429, 503
    ),
    summary="Generate images of one label",
)
async def generate(body: GenerateRequest, request: Request) -> Response:
    """Generate `n` images of `label`; `format` picks a PNG grid, a .npy array or JSON."""
    return await _generate(request, body.to_request())


@router.get(
    "",
    response_class=Response,
    responses=_responses(("image/png",), 401, 404, 422, 429, 503),
    summary="PNG grid for <img src>",
)
@guarded  # a GET that does work: behind the token and the limits like POST
async def generate_png(query: Annotated[GenerateQuery, Query()], request: Request) -> Response:
    """The PNG grid of `POST /generate`, addressable by URL (`codes=0.5,-1`, `traverse=slant&steps=8`)."""
    response = await _generate(request, query.to_request())
    if query.seed is None:
        response.headers["Cache-Control"] = "no-store"  # a random seed: the next load must differ
    return response
