"""Writing one shard: its tar and then its manifest, each atomically, skipped when a verified one is there
(the resume rules of :mod:`service.bulk`)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy
import onnxruntime
from tqdm import tqdm

from service.archives import DatasetPlan, tar_end, tar_samples
from service.bulk.outdir import claim, fsync_dir, open_regular, read_json, shard_lock
from service.bulk.planning import BulkError, BulkJob
from service.config import Settings, available_cores
from service.models import LoadedModel, Loader, ModelRefused

#: 2: shards are runs of ``run.order`` (format 1 had no order: samples in class order).
MANIFEST_FORMAT = 2
#: CPU features that change which onnxruntime kernels run, and so may change the last bit of an image.
_CPU_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve",
)  # fmt: skip


def load_model(job: BulkJob, threads: int = 0) -> LoadedModel:
    """The job's model version, verified (sha256 against the card and the job) and warmed by the loader the
    service loads with; ``threads`` onnxruntime threads (0: one per available core). The other loading
    settings (MAX_MODEL_BYTES, ...) come from the environment, as the service's do."""
    loader = Loader.from_settings(Settings(ort_intra_op_threads=threads), lanes=False)
    path = job.models_dir / job.model / str(job.version)
    try:
        model = loader.load(job.model, job.version, path)
    except ModelRefused as e:
        raise BulkError(f"{job.model} v{job.version} cannot be loaded: {e}") from None
    if model.card.sha256 != job.model_sha256:
        raise BulkError(f"{job.model} v{job.version} changed since the job was planned (sha256 differs)")
    return model


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a regular file (anything else, a FIFO say, is an OSError, never opened)."""
    with open_regular(path) as f:
        return _sha256(f)


def _sha256(f: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while block := f.read(1 << 20):
        digest.update(block)
    return digest.hexdigest()


def verified_manifest(job: BulkJob, index: int) -> dict[str, Any] | None:
    """The manifest of a complete, intact shard ``index`` of this job, or ``None`` when it must be (re)done.

    Only regular files count: a FIFO or device in place of the manifest or the tar is never opened (it
    could block forever), and the shard is redone. Raises :class:`BulkError` when the directory holds a
    complete shard of another run.
    """
    tar, manifest_path = job.out / f"{job.stem(index)}.tar", job.out / f"{job.stem(index)}.json"
    try:
        manifest = read_json(manifest_path)
        recorded, size, sha256 = manifest["run"], manifest["tar_bytes"], manifest["tar_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, torn or not a regular file: the shard is not complete
    if not isinstance(recorded, dict):
        return None
    wanted = job.run_record(index)
    if recorded != wanted:
        differs = sorted(k for k in recorded.keys() | wanted.keys() if recorded.get(k) != wanted.get(k))
        raise BulkError(
            f"{manifest_path} is shard {index} of a different run ({', '.join(differs)} differ); "
            "write this run to another --out"
        )
    try:
        with open_regular(tar) as f:
            if os.fstat(f.fileno()).st_size != size or _sha256(f) != sha256:
                return None
    except OSError:
        return None
    return manifest


def _write_atomically(final: Path, chunks: Any) -> tuple[int, str]:
    """Write ``chunks`` to a temporary file beside ``final``, fsync it, rename it into place, fsync the
    directory; returns ``(bytes, sha256)``. A crash leaves a temporary file, never a short ``final``."""
    temp = final.with_name(f".{final.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    digest, size = hashlib.sha256(), 0
    try:
        with temp.open("wb") as f:
            for chunk in chunks:
                f.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_dir(final.parent)
    return size, digest.hexdigest()


def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    return {"model": model, "machine": platform.machine(), "flags": [f for f in _CPU_FLAGS if f in flags]}


def run_shard(
    job: BulkJob,
    index: int,
    get_model: Callable[[], LoadedModel],
    show_progress: bool = False,
    parallel: int = 1,
) -> dict[str, Any]:
    """Make shard ``index`` complete: skip it when verified, else (re)write it with ``get_model()``'s
    model (called only then, so a rerun of finished shards loads nothing). Returns a summary.
    ``show_progress``: a bar on stderr while it writes, when stderr is a terminal. ``parallel``: pieces
    of each batch run at once (on a one-thread model; the bytes do not depend on it).

    Refuses (:class:`BulkError`) an output directory that belongs to another run; waits while another
    process holds the shard (see :mod:`service.bulk.outdir`)."""
    job.out.mkdir(parents=True, exist_ok=True)
    claim(job)
    with shard_lock(job.out, job.stem(index)):
        return _make_complete(job, index, get_model, show_progress, parallel)


def _make_complete(
    job: BulkJob, index: int, get_model: Callable[[], LoadedModel], show_progress: bool, parallel: int
) -> dict[str, Any]:
    """:func:`run_shard`'s work, with the shard's lock held."""
    stem = job.stem(index)
    start, stop = job.span(index)
    summary = {"shard": index, "tar": f"{stem}.tar", "images": stop - start}
    done = verified_manifest(job, index)
    if done is not None:
        return {
            **summary,
            "status": "skipped",
            "tar_sha256": done["tar_sha256"],
            "seconds": 0.0,
            "cpu_seconds": 0.0,
        }
    began, cpu_began = time.perf_counter(), time.process_time()
    # A stale manifest goes first, so no moment pairs it with the tar about to be written; then whatever
    # a crashed attempt at this shard left behind (a live writer of it would hold the lock).
    (job.out / f"{stem}.json").unlink(missing_ok=True)
    for leftover in job.out.glob(f".{stem}.*.tmp"):
        leftover.unlink(missing_ok=True)
    model = get_model()
    plan = DatasetPlan(
        model, job.labels, job.per_label, job.seed, job.batch, order=job.order, parallel=parallel
    )
    # disable=None: tqdm shows the bar only when stderr is a terminal, so logs and pipes stay clean.
    bar = tqdm(total=stop - start, desc=f"{stem}.tar", unit="img", disable=None if show_progress else True)

    def chunks() -> Any:
        written = 0
        samples = tar_samples(plan, job.png_compress_level, start, stop)
        for first, chunk in zip(range(start, stop, job.batch), samples, strict=True):
            written += len(chunk)
            yield chunk
            bar.update(min(job.batch, stop - first))
        yield tar_end(written)

    with bar:
        size, sha256 = _write_atomically(job.out / f"{stem}.tar", chunks())
    manifest = {
        "format": MANIFEST_FORMAT,
        "run": job.run_record(index),
        "tar": f"{stem}.tar",
        "tar_bytes": size,
        "tar_sha256": sha256,
        "images": stop - start,
        "positions": [start, stop],
        "keys": [plan.key(start), plan.key(stop - 1)],
        "label_counts": _label_counts(plan, start, stop),
        "class_names": [model.card.class_names[label] for label in job.labels],
        "image_shape": list(model.card.image_shape),
        "made_by": {
            "onnxruntime": onnxruntime.__version__,
            "numpy": numpy.__version__,
            "python": platform.python_version(),
            "cpu": cpu_info(),
            "batch": job.batch,
            "host": socket.gethostname(),
        },
    }
    _write_atomically(job.out / f"{stem}.json", [json.dumps(manifest, indent=2).encode() + b"\n"])
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu_began
    return {
        **summary,
        "status": "written",
        "tar_sha256": sha256,
        "seconds": round(seconds, 3),
        # This process's CPU time (onnxruntime's threads included): what the shard costs on an idle core.
        "cpu_seconds": round(cpu_seconds, 3),
    }


def _label_counts(plan: DatasetPlan, start: int, stop: int) -> dict[str, int]:
    """Images per label (as decimal text) at positions ``[start, stop)``, for the manifest."""
    labels = numpy.asarray(plan.labels, dtype=numpy.int64)[plan.indices(start, stop) // plan.per_label]
    return {str(label): int((labels == label).sum()) for label in plan.labels}


def run_all(
    job: BulkJob, shards: Sequence[int], threads: int = 0, show_progress: bool = False
) -> list[dict[str, Any]]:
    """Shards one after another in this process, loading the model once (and only if a shard needs it).
    ``threads`` 0 (one per core): a one-thread model with a batch's pieces run one per core at once, which
    makes ~1.9x the images of one run on every core (BENCHMARKS.md, bulk throughput)."""
    parallel = available_cores() if threads == 0 else 1
    get_model = functools.cache(functools.partial(load_model, job, 1 if parallel > 1 else threads))
    return [run_shard(job, index, get_model, show_progress, parallel) for index in shards]
