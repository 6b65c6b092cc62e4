"""/generate's data plane: an :class:`~service.requests.ImageRequest` checked and resolved into a job (model,
label, seeds, style codes, controls), run with the requests arriving meanwhile, encoded in its format."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

import cgan_contract as contract
from service import formats, style_codes
from service.dataplane.jobs import Job, run_jobs, submit
from service.dataplane.resolve import cap, check_controls, resolve_label, resolve_model, resolve_seed
from service.errors import RequestError
from service.halting import Halt
from service.models import LoadedModel
from service.requests import ImageRequest

if TYPE_CHECKING:
    from service.runtime import Runtime


@dataclass(frozen=True)
class Images:
    """What :func:`images` answers: the encoded images and what made them."""

    model: LoadedModel
    label: int
    seed: int
    media_type: str
    body: bytes
    #: With min_confidence: the images kept per candidate judged, and the candidates judged.
    acceptance_rate: float | None = None
    examined: int | None = None


def prepare(runtime: Runtime, request: ImageRequest) -> Job:
    """Check the request against the limits, resolve model, label and seed; :class:`RequestError` if not."""
    cap(runtime, "n", request.n, " images per request")
    cap(runtime, "nrow", request.nrow)
    model = resolve_model(runtime, request.model, request.version)
    label = resolve_label(model, request.label)
    check_controls(model, request.truncation, request.min_confidence)
    seed = resolve_seed(request.seed, request.n, request.min_confidence)
    seeds, codes = _style(runtime, model, request, contract.request_seeds(seed, request.n))
    labels = np.full(len(seeds), label, dtype=np.int64)
    if request.min_confidence is not None:
        if request.traverse is not None or (codes is not None and not np.all(codes == codes[0])):
            detail = "min_confidence: filtering keeps whole seeds; use it with shared codes, not per image"
            raise RequestError(detail, "min_confidence")
        seeds = contract.request_candidates(seed, request.n)
    encode = formats.IMAGE_FORMATS[request.format].encode
    nrow = request.traverse.steps if request.traverse is not None else request.nrow
    level = runtime.settings.png_compress_level

    def encoder(images: np.ndarray, made_from: np.ndarray | None) -> bytes:
        assert made_from is not None
        return encode(formats.Generated(images, made_from, model, label, codes, nrow, request.pad, level))

    return Job(
        model,
        labels,
        encoder,
        seeds,
        codes=codes,
        truncation=request.truncation,
        min_confidence=request.min_confidence,
        halt=None if request.min_confidence is None else Halt(runtime.halting),
    )


def _style(
    runtime: Runtime, model: LoadedModel, request: ImageRequest, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(per-image seeds, per-image codes or None)`` of a request's codes and traversal, from the seeds of
    its ``n`` images (a traversal's rows)."""
    codes = style_codes.resolve(model.card, request.codes, request.n)
    if request.traverse is None:
        return rows, codes
    if not model.card.codes:
        raise style_codes.no_codes(model.card, "traverse")
    steps = request.traverse.steps
    cap(runtime, "steps", steps, " columns", "traverse.steps")
    limit = runtime.settings.max_n
    if request.n * steps > limit:
        total = f"n {request.n} x steps {steps} is {request.n * steps} images"
        raise RequestError(f"traverse.steps: {total}; at most MAX_N ({limit})", "traverse.steps")
    if request.nrow is not None:
        raise RequestError("nrow: a traversal grid has traverse.steps columns; leave nrow out", "nrow")
    return style_codes.traversal(model.card, rows, request.traverse, codes)


def _answer(request: ImageRequest, job: Job, body: bytes) -> Images:
    selection = job.selection
    assert job.seed is not None
    return Images(
        job.model,
        int(job.labels[0]),
        job.seed,
        formats.IMAGE_FORMATS[request.format].media_type,
        body,
        None if selection is None else selection.acceptance_rate,
        None if selection is None else selection.examined,
    )


async def images(runtime: Runtime, request: ImageRequest) -> Images:
    """The images for a request, sharing a generator run with the requests that arrive meanwhile."""
    since = time.perf_counter()
    job = prepare(runtime, request)
    assert runtime.batcher is not None, "the runtime has not started"
    body = await submit(runtime.batcher, job, since)
    return _answer(request, job, body)


def images_now(runtime: Runtime, request: ImageRequest) -> Images:
    """:func:`images` on the calling thread, without the batcher: the same bytes, for one caller."""
    job = prepare(runtime, request)
    (outcome,) = run_jobs([job])
    if isinstance(outcome, BaseException):
        raise outcome
    return _answer(request, job, outcome)
