"""The data plane: what the service does for a request, whichever protocol carried it (KServe's shape).

Routes turn HTTP into an :class:`ImageRequest`, a :class:`TensorRequest` (Open Inference Protocol) or an
:class:`ArchiveRequest` and call :func:`images`, :func:`tensors` or :func:`archive`; the benchmarks and
the tests call the same functions (:func:`images_now` is :func:`images` without the batcher). There is
one way from a request to bytes::

    ImageRequest  -> prepare()         (limits, model, version, label, seed)     -> Job -> run_jobs() -> bytes
    TensorRequest -> prepare_tensors() (limits, model, version, labels, z | seed) -> Job    (batched by the
                                                             Batcher, or alone in images_now)

Style codes (:mod:`service.style_codes`) ride in the same jobs: a job's codes are the caller's or its seeds'
(the contract's seed rule), and a traversal is a job whose images repeat their row's seed.

and every image, here or in an archive, comes from :meth:`service.models.LoadedModel.generate`. Quality
controls ride the same path: ``truncation`` goes with the seeds into ``generate``, and ``min_confidence``
makes a job (or an archive's plan) pick its seeds with :func:`service.filtering.select`. Refusals
are :class:`RequestError` s that name the field at fault; the HTTP layer only maps them to status codes.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import orjson

import cgan_contract as contract
from service import filtering, imaging, style_codes
from service.archives import MEDIA_TYPES as ARCHIVE_MEDIA_TYPES
from service.archives import DatasetPlan, npz_chunks, tar_chunks, zip_chunks
from service.config import LIMITS
from service.errors import ModelNotFound, NotReady, RequestError
from service.models import LoadedModel

if TYPE_CHECKING:
    from service.runtime import Runtime

IMAGE_MEDIA_TYPES = {"png": "image/png", "npy": "application/x-npy", "json": "application/json"}


# --- resolving what a request names ---------------------------------------------------------------------


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


def resolve_seed(seed: int | None, count: int) -> int:
    """The request seed, or a random one; image ``i`` uses ``seed + i``, which must stay <= MAX_SEED."""
    if seed is None:
        return secrets.randbelow(contract.last_first_seed(count) + 1)
    try:
        contract.check_seed(seed, count)
    except ValueError as e:
        raise RequestError(f"seed: {e}", "seed") from None
    return seed


def _cap(runtime: Runtime, field: str, value: int | None, what: str = "", name: str | None = None) -> None:
    """Refuse ``value`` over the setting that caps ``field``; the error names ``name`` (default ``field``)."""
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
        f"within {e.examined} candidates ({filtering.MAX_DRAWS_PER_IMAGE} per image); lower min_confidence",
        "min_confidence",
    )


# --- images ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRequest:
    """``n`` images of one label, encoded as a PNG grid, .npy bytes or JSON."""

    label: int | str
    n: int = 16
    seed: int | None = None
    model: str | None = None
    format: str = "png"
    nrow: int | None = None
    pad: int = 2
    version: int | None = None
    #: Style codes (see :mod:`service.style_codes`): k values for all images, or one list of k per image.
    codes: Sequence[float] | Sequence[Sequence[float]] | None = None
    #: A traversal grid instead of ``n`` images: ``n`` rows (seeds) of ``traverse.steps`` columns.
    traverse: style_codes.Traversal | None = None
    #: Redraw noise entries beyond this (the contract's truncation rule); None: plain noise.
    truncation: float | None = None
    #: Keep only images the judge gives the label at least this probability (service.filtering).
    min_confidence: float | None = None


@dataclass(eq=False)
class Job:
    """A prepared request: which model makes which images, and how they become response bytes."""

    model: LoadedModel
    label: int
    n: int
    seed: int
    #: Turns this job's ``[n, H, W, C]`` images and the uint64 seeds ``[n]`` they were made from into
    #: response bytes; runs on the generating thread. The seeds are the very array the images came from,
    #: so what a response reports can never drift from what it holds.
    encode: Callable[[np.ndarray, np.ndarray], bytes]
    media_type: str = "application/octet-stream"
    #: int64 ``[n]``: one label per image, when they differ (tensor requests); else ``label`` for all.
    labels: np.ndarray | None = None
    #: float32 ``[n, latent_dim]``: the caller's noise, used instead of the seed rule (``seed`` is unused).
    z: np.ndarray | None = None
    #: uint64 ``[n]``: one seed per image, when not ``seed + i`` (a traversal's rows repeat their seed).
    seeds: np.ndarray | None = None
    #: float32 ``[n, k]``: the caller's style codes, used instead of the seed rule's.
    codes: np.ndarray | None = None
    truncation: float | None = None
    min_confidence: float | None = None
    #: A filtered job's outcome once run: its images' seeds and the acceptance rate.
    selection: filtering.Selection | None = None

    def image_labels(self) -> np.ndarray:
        return self.labels if self.labels is not None else np.full(self.n, self.label, dtype=np.int64)

    def image_seeds(self) -> np.ndarray:
        return self.seeds if self.seeds is not None else contract.request_seeds(self.seed, self.n)

    def image_codes(self) -> np.ndarray:
        """float32 ``[n, k]``: the caller's codes, else the seed rule's (for a model with style codes)."""
        if self.codes is not None:
            return self.codes
        card = self.model.card
        return contract.codes_for_seeds(self.image_seeds(), card.latent_dim, card.code_ranges)


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


def encode(
    model: LoadedModel,
    label: int,
    request: ImageRequest,
    compress_level: int,
    codes: np.ndarray | None,
    images: np.ndarray,
    seeds: np.ndarray,
) -> bytes:
    """``[n, H, W, C]`` images of one request, made from ``seeds``, as a PNG grid, .npy bytes or JSON.

    ``codes`` (the caller's, float32 ``[n, k]``) or, for a model with style codes, the seed rule's codes of
    ``seeds`` are listed per image in the JSON form.
    """
    if request.format == "png":
        nrow = request.traverse.steps if request.traverse is not None else request.nrow
        return imaging.png(imaging.grid(images, nrow, request.pad), compress_level)
    pixels = imaging.squeeze_channels(images)
    if request.format == "npy":
        return imaging.npy(pixels)
    n = len(pixels)
    return orjson.dumps(
        {
            "model": model.name,
            "version": model.version,
            "labels": [label] * n,
            "class_name": model.card.class_names[label],
            "seeds": seeds.tolist(),
            "shape": pixels.shape,
            "images": pixels,
            **({} if not model.card.codes else {"codes": _codes_of(model, codes, seeds)}),
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def _codes_of(model: LoadedModel, codes: np.ndarray | None, seeds: np.ndarray) -> np.ndarray:
    """The codes images were made with: the caller's, else the seed rule's for their seeds."""
    if codes is not None:
        return codes
    return contract.codes_for_seeds(seeds, model.card.latent_dim, model.card.code_ranges)


def prepare(runtime: Runtime, request: ImageRequest) -> Job:
    """Check the request against the limits, resolve model, label and seed; :class:`RequestError` if not."""
    _cap(runtime, "n", request.n, " images per request")
    _cap(runtime, "nrow", request.nrow)
    model = resolve_model(runtime, request.model, request.version)
    label = resolve_label(model, request.label)
    check_controls(model, request.truncation, request.min_confidence)
    draws = 1 if request.min_confidence is None else filtering.MAX_DRAWS_PER_IMAGE
    seed = resolve_seed(request.seed, request.n * draws)
    n, seeds, codes = _style(runtime, model, request, seed)
    varied = request.traverse is not None or (codes is not None and not np.all(codes == codes[0]))
    if request.min_confidence is not None and varied:
        detail = "min_confidence: filtering keeps whole seeds; use it with shared codes, not per image"
        raise RequestError(detail, "min_confidence")
    level = runtime.settings.png_compress_level
    return Job(
        model,
        label,
        n,
        seed,
        functools.partial(encode, model, label, request, level, codes),
        IMAGE_MEDIA_TYPES[request.format],
        seeds=seeds,
        codes=codes,
        truncation=request.truncation,
        min_confidence=request.min_confidence,
    )


def _style(
    runtime: Runtime, model: LoadedModel, request: ImageRequest, seed: int
) -> tuple[int, np.ndarray | None, np.ndarray | None]:
    """``(images, per-image seeds or None, per-image codes or None)`` of a request's codes and traversal."""
    try:
        codes = style_codes.resolve(model.card, request.codes, request.n)
        if request.traverse is None:
            return request.n, None, codes
        if not model.card.codes:
            raise style_codes.no_codes(model.card, "traverse")
        steps = request.traverse.steps
        _cap(runtime, "steps", steps, " columns", "traverse.steps")
        limit = runtime.settings.max_n
        if request.n * steps > limit:
            total = f"n {request.n} x steps {steps} is {request.n * steps} images"
            detail = f"traverse.steps: {total}; at most MAX_N ({limit})"
            raise RequestError(detail, "traverse.steps")
        if request.nrow is not None:
            raise RequestError("nrow: a traversal grid has traverse.steps columns; leave nrow out", "nrow")
        rows = contract.request_seeds(seed, request.n)
        seeds, codes = style_codes.traversal(model.card, rows, request.traverse, codes)
        return len(seeds), seeds, codes
    except style_codes.CodesError as e:
        raise RequestError(str(e), e.field) from None


def run_jobs(jobs: Sequence[Job], lane: bool = False) -> list[bytes | BaseException]:
    """One generator run per model for all ``jobs``, then each job's encoding; errors stay per job.

    Blocking. The batcher's lanes call it with whatever requests arrived together (``lane=True``: on the
    session the lanes share), :func:`images_now` with one.
    """
    outcomes: list[bytes | BaseException] = [b""] * len(jobs)
    by_model: dict[tuple[LoadedModel, float | None], list[int]] = {}
    for i, job in enumerate(jobs):
        if job.min_confidence is not None:
            outcomes[i] = _run_filtered(job, lane)
            continue
        by_model.setdefault((job.model, job.truncation), []).append(i)
    for (served, truncation), members in by_model.items():
        model = served.on_lanes if lane else served
        group = [jobs[i] for i in members]
        try:
            # One seed array per group: the images are made from it and each response reports its slice.
            made_from = np.concatenate([j.image_seeds() for j in group])
            if all(j.z is None and j.labels is None for j in group):
                labels = np.repeat(np.array([j.label for j in group], dtype=np.int64), [j.n for j in group])
                if all(j.codes is None for j in group):
                    images = model.generate(labels, made_from, truncation=truncation)
                else:  # codes per image concatenate like the seeds: given ones, else the seed rule's
                    codes = np.concatenate([j.image_codes() for j in group])
                    images = model.generate(labels, made_from, codes, truncation=truncation)
            else:
                labels = np.concatenate([j.image_labels() for j in group])
                latent = model.card.latent_dim
                noise = contract.truncated_noise_for_seeds
                edges = np.cumsum([0] + [j.n for j in group])
                z = np.concatenate(
                    [
                        noise(made_from[a:b], latent, truncation) if j.z is None else j.z
                        for j, a, b in zip(group, edges[:-1], edges[1:], strict=True)
                    ]
                )
                codes = np.concatenate([j.image_codes() for j in group]) if model.card.codes else None
                images = model.generate(labels, None, codes, z=z)
        except Exception as e:
            for i in members:
                outcomes[i] = e
            continue
        start = 0
        for i, job in zip(members, group, strict=True):
            try:
                outcomes[i] = job.encode(images[start : start + job.n], made_from[start : start + job.n])
            except Exception as e:
                outcomes[i] = e
            start += job.n
    return outcomes


def _run_filtered(job: Job, lane: bool) -> bytes | BaseException:
    """A min_confidence job: its seeds picked by the judge, then encoded; errors become its outcome."""
    assert job.min_confidence is not None
    try:
        job.selection = filtering.select(
            job.model.on_lanes if lane else job.model,
            job.label,
            contract.request_candidates(job.seed, job.n),
            job.n,
            job.min_confidence,
            truncation=job.truncation,
            codes=None if job.codes is None else job.codes[0],
        )
        job.seeds = job.selection.seeds
        return job.encode(job.selection.images, job.selection.seeds)
    except filtering.NotEnoughAccepted as e:
        return not_enough(e, job.min_confidence)
    except Exception as e:
        return e


def _answer(job: Job, body: bytes) -> Images:
    selection = job.selection
    return Images(
        job.model,
        job.label,
        job.seed,
        job.media_type,
        body,
        None if selection is None else selection.acceptance_rate,
        None if selection is None else selection.examined,
    )


async def images(runtime: Runtime, request: ImageRequest) -> Images:
    """The images for a request, sharing a generator run with the requests that arrive meanwhile."""
    job = prepare(runtime, request)
    assert runtime.batcher is not None, "the runtime has not started"
    body = await runtime.batcher.submit(job)
    return _answer(job, body)


def images_now(runtime: Runtime, request: ImageRequest) -> Images:
    """:func:`images` on the calling thread, without the batcher: the same bytes, for one caller."""
    job = prepare(runtime, request)
    (outcome,) = run_jobs([job])
    if isinstance(outcome, BaseException):
        raise outcome
    return _answer(job, outcome)


# --- tensors (Open Inference Protocol) ------------------------------------------------------------------


@dataclass(frozen=True)
class TensorRequest:
    """One image per entry of ``labels`` (class indices), from the caller's noise ``z`` or from ``seed``.

    ``encode(model, seed, images)`` turns the ``[n, H, W, C]`` images into response bytes on the generating
    thread (``seed`` is None when ``z`` was given). The fields are named after the tensors they carry, so a
    refusal names the protocol's input: ``label``, ``z``, or the ``seed`` parameter.
    """

    labels: np.ndarray
    encode: Callable[[LoadedModel, int | None, np.ndarray], bytes]
    z: np.ndarray | None = None
    seed: int | None = None
    model: str | None = None
    version: int | None = None
    media_type: str = "application/octet-stream"
    #: float32 ``[N, k]`` style codes, for a model with a ``codes`` input; the seed rule's when absent
    #: (then required with ``z``, which comes without a seed).
    codes: np.ndarray | None = None


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
    _cap(runtime, "n", n, " images per request", label_name)
    model = resolve_model(runtime, request.model, request.version)
    classes = model.card.num_classes
    outside = labels[(labels < 0) | (labels >= classes)]
    if len(outside):
        detail = f"{label_name}: {outside[0]} is not a class index of {model.name!r} (0..{classes - 1})"
        raise RequestError(detail, label_name)
    z = request.z
    if z is not None:
        if request.seed is not None:
            raise RequestError(f"seed: give the {noise_name!r} input or the seed parameter, not both", "seed")
        want = [n, model.card.latent_dim]
        if z.dtype != np.float32 or list(z.shape) != want:
            detail = f"{noise_name}: must be FP32 {want} for {n} labels, got {z.dtype} {list(z.shape)}"
            raise RequestError(detail, noise_name)
        if not np.isfinite(z).all():
            raise RequestError(f"{noise_name}: must be finite (no NaN or infinity)", noise_name)
        seed = None
    else:
        seed = resolve_seed(request.seed, n)
    codes = request.codes
    try:
        if codes is not None:
            codes = style_codes.check_array(model.card, codes, n)
    except style_codes.CodesError as e:
        raise RequestError(str(e), e.field) from None
    if codes is None and z is not None and model.card.codes:
        k, name = len(model.card.codes), contract.INPUT_CODES
        detail = (
            f"{name}: {model.name!r} needs FP32 [{n}, {k}] codes with the {noise_name!r} input (or use seed)"
        )
        raise RequestError(detail, name)

    def encoder(images: np.ndarray, seeds: np.ndarray, encode=request.encode) -> bytes:
        return encode(model, seed, images)  # the protocol reports the request's seed parameter

    return Job(
        model, int(labels[0]), n, seed or 0, encoder, request.media_type, labels=labels, z=z, codes=codes
    )


async def tensors(runtime: Runtime, request: TensorRequest) -> Tensors:
    """The images for a tensor request, batched with the /generate and tensor requests arriving meanwhile."""
    job = prepare_tensors(runtime, request)
    assert runtime.batcher is not None, "the runtime has not started"
    body = await runtime.batcher.submit(job)
    return Tensors(job.model, None if job.z is not None else job.seed, job.media_type, body)


# --- archives -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveRequest:
    """``per_label`` images of each label (every class by default), as one npz, zip or WebDataset tar."""

    per_label: int
    labels: Sequence[int | str] | None = None
    seed: int | None = None
    model: str | None = None
    format: str = "npz"
    version: int | None = None
    #: Style codes: k values for every image; each image's from its seed when absent.
    codes: Sequence[float] | None = None
    truncation: float | None = None
    min_confidence: float | None = None
    #: The order the images are handed out in (:mod:`cgan_contract.order`); the set is the same in each.
    order: contract.Order = contract.DEFAULT_ORDER
    #: Only positions ``[start, stop)`` of that order (all ``N`` by default): a contiguous, balanced run.
    start: int | None = None
    stop: int | None = None


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


def archive(runtime: Runtime, request: ArchiveRequest) -> Archive:
    """Check and plan an archive; nothing is generated until its chunks are drawn, except with
    ``min_confidence``: then the plan picks every image's seed first (blocking: call it off the loop), so
    a request the judge cannot satisfy is refused before any byte is sent."""
    settings = runtime.settings
    _cap(runtime, "per_label", request.per_label)
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
    draws = 1 if request.min_confidence is None else filtering.MAX_DRAWS_PER_IMAGE
    seed = resolve_seed(request.seed, total * draws)
    try:
        codes = style_codes.resolve(model.card, request.codes, 1, per_image=False)
    except style_codes.CodesError as e:
        raise RequestError(str(e), e.field) from None
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
    )
    if request.min_confidence is not None:
        plan = _filtered_plan(plan, request.min_confidence)
    level = settings.png_compress_level
    if request.format == "npz":
        chunks = npz_chunks(plan)
    elif request.format == "zip":
        chunks = zip_chunks(plan, level)
    else:
        chunks = tar_chunks(plan, level)
    return Archive(plan, request.format, ARCHIVE_MEDIA_TYPES[request.format], chunks)


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


def _filtered_plan(plan: DatasetPlan, min_confidence: float) -> DatasetPlan:
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
            )
        except filtering.NotEnoughAccepted as e:
            raise not_enough(e, min_confidence) from None
        seeds.append(selection.seeds)
        examined += selection.examined
    return dataclasses.replace(
        plan, seeds=np.concatenate(seeds), min_confidence=min_confidence, examined=examined
    )
