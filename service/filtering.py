"""Judge-filtered generation: keep only the images the model's judge assigns to the requested class (its
top class) with at least ``min_confidence``, drawing further seeds in a fixed order until the count is met.

The candidates of a request are a fixed sequence of seeds (the request's own first, then the next ones
after them: :func:`cgan_contract.request_candidates`, :func:`~cgan_contract.block_candidates`); the images
kept are the first ``count`` candidates the judge accepts, in candidate order. So the same request gives
the same images, however the candidates are batched, and each kept image is the unfiltered image of its
seed.
At most :data:`MAX_DRAWS_PER_IMAGE` candidates per requested image are judged; a request that needs
more is refused (:class:`NotEnoughAccepted`), never answered short. A caller's ``halt`` (its client
left, the service is stopping) is read before each batch of candidates: :class:`Halted` ends the pick
within the batch in progress, so abandoned work does not run on for up to 20 n candidates.

Images come from :meth:`service.models.LoadedModel.generate`, like every image the service makes; the
data plane (:mod:`service.dataplane`) decides when this runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

import cgan_contract as contract

if TYPE_CHECKING:
    from service.models import LoadedModel

#: Candidates judged per requested image at most (the contract's): ``n`` images may cost up to 20 n
#: generated and judged ones, so a min_confidence the model rarely reaches is refused after bounded work.
MAX_DRAWS_PER_IMAGE = contract.MAX_DRAWS_PER_IMAGE


class NotEnoughAccepted(Exception):
    """Fewer than ``count`` of the ``examined`` candidates reached the confidence."""

    def __init__(self, label: int, accepted: int, count: int, examined: int) -> None:
        super().__init__(f"{accepted} of {count} images of label {label} within {examined} candidates")
        self.label = label
        self.accepted = accepted
        self.count = count
        self.examined = examined


class Halted(Exception):
    """The pick was told to stop (``halt()`` turned true) after judging ``examined`` candidates."""

    def __init__(self, examined: int) -> None:
        super().__init__(f"stopped after {examined} candidates")
        self.examined = examined


@dataclass(frozen=True)
class Selection:
    """The kept images (in candidate order), their seeds, and how many candidates it took."""

    images: np.ndarray
    seeds: np.ndarray
    #: Candidates judged up to and including the last one kept.
    examined: int

    @property
    def acceptance_rate(self) -> float:
        return len(self.seeds) / self.examined if self.examined else 1.0


def accepts(probabilities: np.ndarray, label: int, min_confidence: float) -> np.ndarray:
    """Which images the filter keeps: the judge's top class is ``label`` and its probability of ``label`` is
    at least ``min_confidence`` (float32). At 0 the filter only drops images the judge calls another class:
    that raises label accuracy without thinning the set to its easiest images, which high thresholds do
    (QUALITY.md, "Filters and training value")."""
    on_label = probabilities.argmax(axis=1) == label
    return on_label & (probabilities[:, label] >= np.float32(min_confidence))


def select(
    model: LoadedModel,
    label: int,
    candidates: np.ndarray,
    count: int,
    min_confidence: float,
    *,
    truncation: float | None = None,
    codes: np.ndarray | None = None,
    batch: int = 1024,
    halt: Callable[[], bool] | None = None,
) -> Selection:
    """The first ``count`` of ``candidates`` (uint64 seeds) whose image the judge :func:`accepts` for
    ``label`` at ``min_confidence``; :class:`NotEnoughAccepted` when they run out. Blocking.

    Candidates are generated ``batch`` at most at a time: the first run takes ``count`` of them, later
    ones what the acceptance so far says is still needed, so a rate near 1 costs one extra small run.
    ``codes`` (float32 ``[k]``) are every candidate's style codes; else each follows its seed. ``halt``
    is asked before each run: true ends the pick with :class:`Halted`.
    """
    images: list[np.ndarray] = []
    seeds: list[np.ndarray] = []
    kept = start = examined = 0
    while kept < count and start < len(candidates):
        if halt is not None and halt():
            raise Halted(start)
        need = count - kept
        rate = kept / start if start else 1.0
        size = need if not start else math.ceil(need / max(rate, 0.05) * 1.25) + 4
        size = min(size, batch, len(candidates) - start)
        chunk = candidates[start : start + size]
        shared = None if codes is None else np.tile(codes, (size, 1))
        made = model.generate(np.full(size, label, dtype=np.int64), chunk, shared, truncation=truncation)
        accepted = np.flatnonzero(accepts(model.classify(made), label, min_confidence))[:need]
        images.append(made[accepted])
        seeds.append(chunk[accepted])
        kept += len(accepted)
        if kept == count:
            examined = start + int(accepted[-1]) + 1
        start += size
    if kept < count:
        raise NotEnoughAccepted(label, kept, count, start)
    return Selection(np.concatenate(images), np.concatenate(seeds), examined)
