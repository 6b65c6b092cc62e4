"""Liveness and readiness probes; never behind auth or the concurrency limit."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.http.middleware import GuardedRoute
from service.http.schemas import Health, Readiness
from service.routes.deps import RuntimeDep

router = APIRouter(tags=["health"], route_class=GuardedRoute)


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Live: the process answers HTTP."""
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: no model loaded, or shutting down."}},
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Ready: a model is loaded and warmed, and the service is not shutting down."""
    ready, reason = runtime.readiness()
    models = {name: m.version for name, m in runtime.registry.models.items()}
    body = Readiness(ready=ready, reason=reason, models=models, refused=runtime.registry.refusals)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)
