"""``/metrics`` in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.http.middleware import GuardedRoute
from service.routes.deps import RuntimeDep

router = APIRouter(tags=["operations"], route_class=GuardedRoute)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus exposition.",
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(runtime: RuntimeDep) -> Response:
    """Request, inference and model metrics for Prometheus."""
    runtime.publish_ready()  # exact for the worker answering; the others publish on every scan
    return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
