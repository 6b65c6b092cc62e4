"""Which loaded version of a model serves requests that name none: the PRECISION rule.

An INT8 twin (``precision: int8`` on its card) is published by ``cgan-train export --int8`` as the next
version of its FP32 source, only if it passed the quality gate, and its card records that gate. Being newest
does not make it the default; PRECISION does:

- ``auto`` (the default): the newest FP32 version, or its gated INT8 twin where one is loaded (its own: the
  same version number, root and sha256). A newer FP32 version (a retrain, or a trained v1 in MODELS_DIR
  beside the bundled v1's twin) wins over another version's twin until it gets its own.
- ``fp32``: the newest FP32 version.
- ``int8``: the newest gated INT8 twin whatever its source's age, else as ``auto``.

A twin without a passed gate against its own source is never the default (it stays pinnable by version). Only
where no FP32 version and no gated twin is loaded at all does the newest version serve, so a name never loses
its default to this rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from service.models.loaded import LoadedModel

#: The PRECISION setting's values (Settings.precision spells them too: config imports no model code).
Precision = Literal["auto", "fp32", "int8"]


def gated(model: LoadedModel) -> bool:
    """An INT8 version whose card records a passed gate against the FP32 version it was quantized from."""
    card = model.card
    return (
        card.precision == "int8"
        and card.gate is not None
        and card.gate.passed
        and card.gate.against_version == card.quantized_from
    )


def serving_version(versions: Mapping[int, LoadedModel], precision: Precision) -> LoadedModel:
    """The version of one name that serves requests naming none; ``versions`` is newest first, not empty."""
    ordered = list(versions.values())
    fp32 = next((m for m in ordered if m.card.precision == "fp32"), None)
    twins = [m for m in ordered if gated(m)]
    if precision == "int8" and twins:
        return twins[0]
    if fp32 is None:
        return twins[0] if twins else ordered[0]
    if precision == "fp32":
        return fp32
    own = [m for m in twins if twin_of(m, fp32)]
    return own[0] if own else fp32


def twin_of(twin: LoadedModel, fp32: LoadedModel) -> bool:
    """``twin`` was quantized from this very ``fp32`` version: its number, its root (a trained v1 in
    MODELS_DIR is not the bundled v1), and its sha256 where the gate records it."""
    gate = twin.card.gate
    return (
        twin.card.quantized_from == fp32.version
        and twin.source == fp32.source
        and gate is not None
        and gate.against_sha256 in (None, fp32.card.sha256)
    )
