"""Resolving what a request names against the runtime: the model and version, a label, the seed, and the
limits and quality controls it must keep. Each refusal is a :class:`~service.errors.RequestError` naming the
field at fault."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import cgan_contract as contract
from service import filtering
from service.config import LIMITS
from service.errors import ModelNotFound, NotReady, RequestError
from service.models import LoadedModel

if TYPE_CHECKING:
    from service.runtime import Runtime


def resolve_model(runtime: Runtime, name: str | None, version: int | None = None) -> LoadedModel:
    """The model a request names (or the default one) at ``version`` (or its newest loaded one); unknown
    names and versions, and no models loaded, are refused."""
    registry = runtime.registry
    models = registry.models
    if not models:
        raise NotReady(f"not ready: {runtime.readiness()[1]}", None, retry_after=5)
    if name is None:
        name = registry.default_name()
        if name is None:
            raise RequestError(
                f"model: several models are loaded ({', '.join(sorted(models))}); name one", "model"
            )
    model = models.get(name)
    if model is None:
        raise ModelNotFound(f"model: {name!r} is not loaded; loaded: {', '.join(sorted(models))}", "model")
    return model if version is None else loaded_version(runtime, name, version)


def served_model(runtime: Runtime, name: str, version: int | None = None) -> LoadedModel:
    """A loaded model by the name (and version) in a resource path."""
    model = runtime.registry.models.get(name)
    if model is None:
        raise ModelNotFound(f"name: model {name!r} is not loaded", "name")
    return model if version is None else loaded_version(runtime, name, version)


def loaded_version(runtime: Runtime, name: str, version: int) -> LoadedModel:
    """``version`` of model ``name``; a version not loaded is a 404 that lists the loaded ones."""
    versions = runtime.registry.loaded.get(name, {})
    model = versions.get(version)
    if model is None:
        loaded = ", ".join(map(str, versions)) or "none"
        raise ModelNotFound(f"version: {name!r} v{version} is not loaded; loaded: {loaded}", "version")
    return model


def loaded_versions(runtime: Runtime, name: str) -> list[int]:
    """The loaded versions of ``name``, newest first."""
    return list(runtime.registry.loaded.get(name, {}))


def resolve_label(model: LoadedModel, label: int | str, field: str = "label") -> int:
    try:
        return model.card.label_index(label)
    except ValueError as e:
        raise RequestError(f"{field}: {e}", field) from None


def resolve_seed(seed: int | None, count: int, min_confidence: float | None = None) -> int:
    """The request's seed, or a random one, such that the seeds of its ``count`` images stay within the
    contract's bound (:func:`cgan_contract.check_seed`); with ``min_confidence`` every candidate the judge
    may see counts (:data:`cgan_contract.MAX_DRAWS_PER_IMAGE` per image)."""
    if min_confidence is not None:
        count *= contract.MAX_DRAWS_PER_IMAGE
    if seed is None:
        return secrets.randbelow(contract.last_first_seed(count) + 1)
    try:
        contract.check_seed(seed, count)
    except ValueError as e:
        raise RequestError(f"seed: {e}", "seed") from None
    return seed


def cap(runtime: Runtime, field: str, value: int | None, what: str = "", name: str | None = None) -> None:
    """Refuse ``value`` over the setting that caps ``field`` (:data:`service.config.LIMITS`); the error names
    ``name`` (default ``field``)."""
    limit = getattr(runtime.settings, LIMITS[field])
    if value is not None and value > limit:
        name = name or field
        raise RequestError(f"{name}: at most {LIMITS[field].upper()} ({limit}){what}", name)


def check_controls(model: LoadedModel, truncation: float | None, min_confidence: float | None) -> None:
    """Refuse a truncation outside the contract's range, and a min_confidence outside 0..1 or for a model
    without a judge."""
    low, high = contract.MIN_TRUNCATION, contract.MAX_TRUNCATION
    if truncation is not None and not low <= truncation <= high:
        raise RequestError(f"truncation: must be in {low}..{high}, got {truncation}", "truncation")
    if min_confidence is None:
        return
    if not 0.0 <= min_confidence <= 1.0:
        raise RequestError(f"min_confidence: must be in 0..1, got {min_confidence}", "min_confidence")
    if model.judge is None:
        detail = f"min_confidence: {model.name!r} v{model.version} has no judge ({contract.JUDGE_FILE})"
        raise RequestError(detail, "min_confidence")


def not_enough(e: filtering.NotEnoughAccepted, min_confidence: float) -> RequestError:
    """The 422 for a filtered request whose candidates ran out."""
    return RequestError(
        f"min_confidence: only {e.accepted} of {e.count} images of label {e.label} reached {min_confidence} "
        f"within {e.examined} candidates ({contract.MAX_DRAWS_PER_IMAGE} per image); lower min_confidence",
        "min_confidence",
    )
