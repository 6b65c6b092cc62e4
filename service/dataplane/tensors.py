"""The Open Inference Protocol's data plane: a :class:`~service.requests.TensorRequest` (labels, and the
caller's noise or a seed) checked against the model's signature and resolved into a job, batched with the
/generate requests arriving meanwhile."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

import cgan_contract as contract
from service import style_codes
from service.dataplane.jobs import Job, run_jobs, submit
from service.dataplane.resolve import cap, resolve_model, resolve_seed
from service.errors import RequestError
from service.models import LoadedModel
from service.requests import TensorRequest

if TYPE_CHECKING:
    from service.runtime import Runtime


@dataclass(frozen=True)
class Tensors:
    """What :func:`tensors` answers: the encoded images and what made them (``seed`` None for given z)."""

    model: LoadedModel
    seed: int | None
    media_type: str
    body: bytes


def prepare_tensors(runtime: Runtime, request: TensorRequest) -> Job:
    """Check a tensor request against the limits and the model's signature; :class:`RequestError` if not."""
    label_name, noise_name = contract.INPUT_LABEL, contract.INPUT_NOISE
    labels = np.asarray(request.labels)
    if labels.ndim != 1 or labels.dtype != np.int64:
        raise RequestError(
            f"{label_name}: must be INT64 [N], got {labels.dtype} {list(labels.shape)}", label_name
        )
    n = len(labels)
    if n == 0:
        raise RequestError(f"{label_name}: at least one image (N >= 1)", label_name)
    cap(runtime, "n", n, " images per request", label_name)
    model = resolve_model(runtime, request.model, request.version)
    classes = model.card.num_classes
    outside = labels[(labels < 0) | (labels >= classes)]
    if len(outside):
        detail = f"{label_name}: {outside[0]} is not a class index of {model.name!r} (0..{classes - 1})"
        raise RequestError(detail, label_name)
    z, seed, seeds = request.z, None, None
    if z is not None:
        if request.seed is not None:
            raise RequestError(f"seed: give the {noise_name!r} input or the seed parameter, not both", "seed")
        want = [n, model.card.latent_dim]
        if z.dtype != np.float32 or list(z.shape) != want:
            detail = f"{noise_name}: must be FP32 {want} for {n} labels, got {z.dtype} {list(z.shape)}"
            raise RequestError(detail, noise_name)
        if not np.isfinite(z).all():
            raise RequestError(f"{noise_name}: must be finite (no NaN or infinity)", noise_name)
    else:
        seed = resolve_seed(request.seed, n)
        seeds = contract.request_seeds(seed, n)
    codes = request.codes
    if codes is not None:
        codes = style_codes.check_array(model.card, codes, n)
    elif z is not None and model.card.codes:
        k, name = len(model.card.codes), contract.INPUT_CODES
        detail = (
            f"{name}: {model.name!r} needs FP32 [{n}, {k}] codes with the {noise_name!r} input (or use seed)"
        )
        raise RequestError(detail, name)

    def encoder(images: np.ndarray, made_from: np.ndarray | None) -> bytes:
        return request.encode(model, seed, images)  # the protocol reports the request's seed parameter

    return Job(model, labels, encoder, seeds, z, codes)


async def tensors(runtime: Runtime, request: TensorRequest) -> Tensors:
    """The images for a tensor request, batched with the /generate and tensor requests arriving meanwhile."""
    since = time.perf_counter()
    job = prepare_tensors(runtime, request)
    assert runtime.batcher is not None, "the runtime has not started"
    body = await submit(runtime.batcher, job, since)
    return Tensors(job.model, job.seed, request.media_type, body)


def tensors_now(runtime: Runtime, request: TensorRequest) -> Tensors:
    """:func:`tensors` on the calling thread, without the batcher: the same bytes, for one caller."""
    job = prepare_tensors(runtime, request)
    (outcome,) = run_jobs([job])
    if isinstance(outcome, BaseException):
        raise outcome
    return Tensors(job.model, job.seed, request.media_type, outcome)
