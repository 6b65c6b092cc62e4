"""``/dataset``: many labelled images as one streamed npz, zip or WebDataset tar archive."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from service import dataplane, formats
from service.http.errors import error_responses
from service.http.middleware import GuardedRoute
from service.http.schemas import DatasetRequest
from service.routes.deps import RuntimeDep

router = APIRouter(prefix="/dataset", tags=["dataset"], route_class=GuardedRoute)

_BINARY = {"schema": {"type": "string", "format": "binary"}}


@router.post(
    "",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The archive, streamed as it is generated (chunked; no Content-Length).",
            "headers": {
                "X-Model": {"description": "Model name.", "schema": {"type": "string"}},
                "X-Model-Version": {"description": "Model version.", "schema": {"type": "integer"}},
                "X-Seed": {
                    "description": "Image j of the set used seed + j (the archive records every seed).",
                    "schema": {"type": "integer"},
                },
                "X-Images": {
                    "description": "Number of images in this archive.",
                    "schema": {"type": "integer"},
                },
                "X-Order": {"description": "The order the images come in.", "schema": {"type": "string"}},
                "X-Acceptance-Rate": {
                    "description": "With min_confidence: images kept / candidates judged.",
                    "schema": {"type": "number"},
                },
            },
            "content": {f.media_type: _BINARY for f in formats.ARCHIVE_FORMATS.values()},
        },
        **error_responses(400, 401, 404, 413, 422, 429, 503),
    },
    summary="Stream a labelled dataset",
)
async def dataset(body: DatasetRequest, runtime: RuntimeDep) -> StreamingResponse:
    """`per_label` images of each label (all classes by default), class-mixed (`order`); image j of the set
    uses `seed + j` (with `min_confidence`, the seeds the judge kept), and every format records each
    image's seed."""
    wanted = body.to_request()
    if wanted.min_confidence is None:
        archive = dataplane.archive(runtime, wanted)
    else:  # the judge picks every seed before the first byte: off the event loop
        archive = await runtime.blocking(dataplane.archive, runtime, wanted)
    plan = archive.plan
    headers = {
        "Content-Disposition": f'attachment; filename="{archive.filename}"',
        "X-Model": plan.model.name,
        "X-Model-Version": str(plan.model.version),
        "X-Seed": str(plan.seed),
        "X-Images": str(plan.total),
        "X-Order": plan.order,
    }
    if plan.acceptance_rate is not None:
        headers["X-Acceptance-Rate"] = f"{plan.acceptance_rate:.6g}"
    return StreamingResponse(runtime.stream(archive.chunks), media_type=archive.media_type, headers=headers)
