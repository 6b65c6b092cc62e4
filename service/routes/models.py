"""``/v1/models``: the model cards being served, quality section included."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from service.dataplane import loaded_versions, served_model
from service.http.errors import error_responses
from service.http.middleware import GuardedRoute
from service.http.schemas import ModelList, ModelName, ServedModel, Version
from service.models import LoadedModel
from service.routes.deps import RuntimeDep
from service.runtime import Runtime

router = APIRouter(prefix="/v1/models", tags=["models"], route_class=GuardedRoute)


def _served(runtime: Runtime, model: LoadedModel, default: str | None) -> ServedModel:
    return ServedModel(
        name=model.name,
        version=model.version,
        versions=loaded_versions(runtime, model.name),
        default=model.name == default,
        source=model.source,
        loaded_at=model.loaded_at,
        card=model.card,
    )


@router.get("", response_model=ModelList)
async def list_models(runtime: RuntimeDep) -> ModelList:
    """Every served model with the card of its newest loaded version and the list of loaded versions."""
    default = runtime.registry.default_name()
    models = runtime.registry.models
    return ModelList(
        default=default, models=[_served(runtime, models[name], default) for name in sorted(models)]
    )


@router.get("/{name}", response_model=ServedModel, responses=error_responses(404, 422))
async def get_model(
    name: Annotated[ModelName, Path(description="Model name.")],
    runtime: RuntimeDep,
    version: Annotated[Version | None, Query()] = None,
) -> ServedModel:
    """One served model with its card: the newest loaded version's, or `version`'s."""
    return _served(runtime, served_model(runtime, name, version), runtime.registry.default_name())
