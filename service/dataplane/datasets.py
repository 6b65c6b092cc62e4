"""/dataset's data plane: an :class:`~service.requests.ArchiveRequest` checked and planned
(:class:`~service.archives.DatasetPlan`: labels, seeds, codes, controls, order, part), then written batch by
batch by its format's writer as the archive streams."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

import cgan_contract as contract
from service import filtering, formats, style_codes
from service.archives import DatasetPlan
from service.config import available_cores
from service.dataplane.jobs import halted
from service.dataplane.resolve import (
    cap,
    check_controls,
    not_enough,
    resolve_label,
    resolve_model,
    resolve_seed,
)
from service.errors import RequestError
from service.requests import ArchiveRequest

if TYPE_CHECKING:
    from service.runtime import Runtime


@dataclass(frozen=True)
class Archive:
    """A planned archive; ``chunks`` is a blocking generator of its bytes (see ``Runtime.stream``)."""

    plan: DatasetPlan
    format: str
    media_type: str
    chunks: Generator[bytes, None, None]

    @property
    def filename(self) -> str:
        return self.plan.filename(self.format)


def archive(runtime: Runtime, request: ArchiveRequest, halt: Callable[[], bool] | None = None) -> Archive:
    """Check and plan an archive; nothing is generated until its chunks are drawn, except with
    ``min_confidence``: then the plan picks every image's seed first (blocking: call it off the loop), so
    a request the judge cannot satisfy is refused before any byte is sent. That pick reads ``halt``
    (``Runtime.blocking`` hands one in) before each batch of candidates and ends when it turns true: a
    503 when the service is stopping (a caller that left hears nothing)."""
    settings = runtime.settings
    cap(runtime, "per_label", request.per_label)
    model = resolve_model(runtime, request.model, request.version)
    if request.labels is None:
        labels = tuple(range(model.card.num_classes))
    else:
        labels = tuple(resolve_label(model, label, f"labels[{i}]") for i, label in enumerate(request.labels))
        if len(set(labels)) != len(labels):
            raise RequestError("labels: each label may appear once", "labels")
    total = len(labels) * request.per_label
    if total > settings.max_dataset_images:
        limit = settings.max_dataset_images
        detail = f"per_label: {request.per_label} x {len(labels)} labels exceeds MAX_DATASET_IMAGES ({limit})"
        raise RequestError(detail, "per_label")
    check_controls(model, request.truncation, request.min_confidence)
    seed = resolve_seed(request.seed, total, request.min_confidence)
    codes = style_codes.resolve(model.card, request.codes, 1, per_image=False)
    start, stop = _slice(request, total)
    plan = DatasetPlan(
        model,
        labels,
        request.per_label,
        seed,
        settings.dataset_batch,
        codes=None if codes is None else codes[0],
        truncation=request.truncation,
        order=_order(request.order),
        start=start,
        stop=stop,
        # One archive is one stream: its pieces run on every core (this worker's share is for /generate).
        parallel=available_cores(),
    )
    if request.min_confidence is not None:
        plan = _filtered_plan(plan, request.min_confidence, halt)
    chosen = formats.ARCHIVE_FORMATS[request.format]
    chunks = chosen.write(plan, settings.png_compress_level)
    return Archive(plan, request.format, chosen.media_type, chunks)


def _order(order: str) -> contract.Order:
    try:
        return contract.check_order(order)
    except ValueError as e:
        raise RequestError(f"order: {e}", "order") from None


def _slice(request: ArchiveRequest, total: int) -> tuple[int, int]:
    """The positions ``[start, stop)`` a request asks for, within the ``total`` images of its set."""
    start = 0 if request.start is None else request.start
    stop = total if request.stop is None else request.stop
    if not 0 <= start < total:
        raise RequestError(
            f"start: must be 0..{total - 1} (the set holds {total} images), got {start}", "start"
        )
    if not start < stop <= total:
        detail = (
            f"stop: must be {start + 1}..{total} (after start {start}, within {total} images), got {stop}"
        )
        raise RequestError(detail, "stop")
    return start, stop


def _filtered_plan(plan: DatasetPlan, min_confidence: float, halt: Callable[[], bool] | None) -> DatasetPlan:
    """``plan`` with each label block's seeds picked by the judge; the images are made again when the
    archive streams (memory stays one batch), so a filtered archive costs about twice the generator runs."""
    seeds, examined = [], 0
    for block, label in enumerate(plan.labels):
        candidates = contract.block_candidates(plan.seed, plan.per_label, len(plan.labels), block)
        try:
            selection = filtering.select(
                plan.model,
                label,
                candidates,
                plan.per_label,
                min_confidence,
                truncation=plan.truncation,
                codes=plan.codes,
                batch=plan.batch,
                halt=halt,
            )
        except filtering.NotEnoughAccepted as e:
            raise not_enough(e, min_confidence) from None
        except filtering.Halted:
            raise halted() from None
        seeds.append(selection.seeds)
        examined += selection.examined
    return dataclasses.replace(
        plan, seeds=np.concatenate(seeds), min_confidence=min_confidence, examined=examined
    )
