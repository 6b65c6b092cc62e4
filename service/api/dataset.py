"""``/dataset``: many labelled images as one streamed npz or zip archive."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from service.api.deps import RuntimeDep, resolve_label, resolve_model, resolve_seed
from service.api.schemas import DatasetRequest
from service.datasets import MEDIA_TYPES, DatasetPlan, npz_chunks, zip_chunks
from service.errors import ApiError, error_responses

router = APIRouter(prefix="/dataset", tags=["dataset"])

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
                "X-Seed": {"description": "Image j used seed + j.", "schema": {"type": "integer"}},
                "X-Images": {"description": "Number of images.", "schema": {"type": "integer"}},
            },
            "content": {MEDIA_TYPES["npz"]: _BINARY, MEDIA_TYPES["zip"]: _BINARY},
        },
        **error_responses(400, 401, 404, 413, 422, 429, 503),
    },
    summary="Stream a labelled dataset",
)
async def dataset(body: DatasetRequest, runtime: RuntimeDep) -> StreamingResponse:
    """`per_label` images of each label (all classes by default): image j uses `seed + j`, labels in order."""
    settings = runtime.settings
    if body.per_label > settings.max_per_label:
        raise ApiError(422, f"per_label: at most MAX_PER_LABEL ({settings.max_per_label})", "per_label")
    model = resolve_model(runtime, body.model)
    if body.labels is None:
        labels = tuple(range(model.card.num_classes))
    else:
        labels = tuple(resolve_label(model, label, f"labels[{i}]") for i, label in enumerate(body.labels))
        if len(set(labels)) != len(labels):
            raise ApiError(422, "labels: each label may appear once", "labels")
    total = len(labels) * body.per_label
    if total > settings.max_dataset_images:
        limit = settings.max_dataset_images
        detail = f"per_label: {body.per_label} x {len(labels)} labels exceeds MAX_DATASET_IMAGES ({limit})"
        raise ApiError(422, detail, "per_label")
    plan = DatasetPlan(model, labels, body.per_label, resolve_seed(body.seed, total), settings.dataset_batch)
    chunks = npz_chunks(plan) if body.format == "npz" else zip_chunks(plan, settings.png_compress_level)
    headers = {
        "Content-Disposition": f'attachment; filename="{plan.filename(body.format)}"',
        "X-Model": model.name,
        "X-Model-Version": str(model.version),
        "X-Seed": str(plan.seed),
        "X-Images": str(total),
    }
    return StreamingResponse(runtime.stream(chunks), media_type=MEDIA_TYPES[body.format], headers=headers)
