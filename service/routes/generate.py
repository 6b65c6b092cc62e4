"""``/generate``: images of one label, as a PNG grid, a .npy array or JSON."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from service import dataplane, style_codes
from service.dataplane import ImageRequest
from service.errors import RequestError
from service.http.errors import error_responses
from service.http.middleware import GuardedRoute, guarded
from service.http.schemas import GeneratedImages, GenerateQuery, GenerateRequest

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
    content = {
        "image/png": _BINARY,
        "application/x-npy": _BINARY,
        "application/json": {
            "schema": GeneratedImages.model_json_schema(ref_template="#/components/schemas/{model}")
        },
    }
    ok = {"description": "The images.", "headers": _HEADERS, "content": {m: content[m] for m in media_types}}
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
        ("image/png", "application/x-npy", "application/json"), 400, 401, 404, 413, 422, 429, 503
    ),
    summary="Generate images of one label",
)
async def generate(body: GenerateRequest, request: Request) -> Response:
    """Generate `n` images of `label`; `format` picks a PNG grid, a .npy array or JSON."""
    wanted = ImageRequest(
        label=body.label,
        n=body.n,
        seed=body.seed,
        model=body.model,
        format=body.format,
        nrow=body.nrow,
        pad=body.pad,
        version=body.version,
        codes=body.codes,
        traverse=None
        if body.traverse is None
        else style_codes.Traversal(body.traverse.code, body.traverse.steps),
        truncation=body.truncation,
        min_confidence=body.min_confidence,
    )
    return await _generate(request, wanted)


@router.get(
    "",
    response_class=Response,
    responses=_responses(("image/png",), 401, 404, 422, 429, 503),
    summary="PNG grid for <img src>",
)
@guarded  # a GET that does work: behind the token and the limits like POST
async def generate_png(query: Annotated[GenerateQuery, Query()], request: Request) -> Response:
    """The PNG grid of `POST /generate`, addressable by URL (`codes=0.5,-1`, `traverse=slant&steps=8`)."""
    q = query
    try:
        values = None if q.codes is None else style_codes.parse_text(q.codes)
    except style_codes.CodesError as e:
        raise RequestError(str(e), e.field) from None
    if q.steps is not None and q.traverse is None:
        raise RequestError("steps: only with traverse (the code to sweep)", "steps")
    steps = q.steps or style_codes.DEFAULT_STEPS
    sweep = None if q.traverse is None else style_codes.Traversal(q.traverse, steps)
    wanted = ImageRequest(
        label=q.label,
        n=q.n,
        seed=q.seed,
        model=q.model,
        format="png",
        nrow=q.nrow,
        pad=q.pad,
        version=q.version,
        codes=values,
        traverse=sweep,
        truncation=q.truncation,
        min_confidence=q.min_confidence,
    )
    response = await _generate(request, wanted)
    if q.seed is None:
        response.headers["Cache-Control"] = "no-store"  # a random seed: the next load must differ
    return response
