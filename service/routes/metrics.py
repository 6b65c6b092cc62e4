"""``/metrics`` in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

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
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
