"""``/v1/models``: the model cards being served, quality section included."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from service.dataplane import served_model
from service.http.errors import error_responses
from service.http.middleware import GuardedRoute
from service.http.schemas import ModelList, ModelName, ServedModel
from service.registry import LoadedModel
from service.routes.deps import RuntimeDep

router = APIRouter(prefix="/v1/models", tags=["models"], route_class=GuardedRoute)


def _served(model: LoadedModel, default: str | None) -> ServedModel:
    return ServedModel(
        name=model.name,
        version=model.version,
        default=model.name == default,
        loaded_at=model.loaded_at,
        card=model.card,
    )


@router.get("", response_model=ModelList)
async def list_models(runtime: RuntimeDep) -> ModelList:
    """Every served model with its card."""
    default = runtime.registry.default_name()
    models = runtime.registry.models
    return ModelList(default=default, models=[_served(models[name], default) for name in sorted(models)])


@router.get("/{name}", response_model=ServedModel, responses=error_responses(404, 422))
async def get_model(
    name: Annotated[ModelName, Path(description="Model name.")], runtime: RuntimeDep
) -> ServedModel:
    """One served model with its card."""
    return _served(served_model(runtime, name), runtime.registry.default_name())
