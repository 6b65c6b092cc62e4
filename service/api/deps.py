"""Dependencies shared by the routers, as ``Annotated`` aliases."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request

from service import contract
from service.errors import ApiError
from service.models import LoadedModel
from service.runtime import Runtime


# `async def` on purpose: FastAPI runs a plain `def` dependency in a worker thread, a thread hop per request.
async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def resolve_model(runtime: Runtime, name: str | None) -> LoadedModel:
    """The model a request names, or the default one; 404 for unknown names, 503 when none is loaded."""
    registry = runtime.registry
    models = registry.models
    if not models:
        raise ApiError(503, f"not ready: {runtime.readiness()[1]}", None, {"Retry-After": "5"})
    if name is None:
        name = registry.default_name()
        if name is None:
            raise ApiError(
                422, f"model: several models are loaded ({', '.join(sorted(models))}); name one", "model"
            )
    model = models.get(name)
    if model is None:
        raise ApiError(404, f"model: {name!r} is not loaded; loaded: {', '.join(sorted(models))}", "model")
    return model


def served_model(runtime: Runtime, name: str) -> LoadedModel:
    """A loaded model by the name in the URL path; 404 otherwise."""
    model = runtime.registry.models.get(name)
    if model is None:
        raise ApiError(404, f"name: model {name!r} is not loaded", "name")
    return model


def resolve_label(model: LoadedModel, label: int | str, field: str = "label") -> int:
    try:
        return model.card.label_index(label)
    except ValueError as e:
        raise ApiError(422, f"{field}: {e}", field) from None


def resolve_seed(seed: int | None, count: int) -> int:
    """The request seed, or a random one; image ``i`` uses ``seed + i``, which must stay <= MAX_SEED."""
    last = contract.MAX_SEED - count + 1
    if seed is None:
        return secrets.randbelow(last + 1)
    if seed > last:
        raise ApiError(422, f"seed: seed + {count} images - 1 exceeds MAX_SEED ({contract.MAX_SEED})", "seed")
    return seed
