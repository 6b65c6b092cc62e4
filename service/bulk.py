"""``python -m service.bulk`` / ``cgan-bulk``: many labelled images as sharded WebDataset tars.

Needs only the service install (onnxruntime; never TensorFlow). One process writes one shard (a pod of an
Indexed Job, ``JOB_COMPLETION_INDEX``), every shard in turn (``--all``), or every shard as a Ray task
(``--ray ADDRESS``, :mod:`service.bulk_ray`); each way writes the same bytes for the same shard.

The global sample list, the same as ``/dataset``'s for the same labels, per_label, seed and order::

    N = len(labels) * per_label
    image j (0 <= j < N): label labels[j // per_label], seed seed + j     (labels in the order given)
    position p (0 <= p < N): image cgan_contract.image_indices(p, ...)  (``--order``, class-mixed by default)

Shard ``i`` of ``K`` holds positions ``[i * N // K, (i + 1) * N // K)``: contiguous, sizes differing by at
most one, fixed by ``(N, K)`` alone; in the default order every shard holds every label ``floor`` or
``ceil`` of its size / ``len(labels)`` times, so shard-level shuffling mixes classes as WebDataset users
expect. Its images are :meth:`LoadedModel.generate` 's for those labels and seeds, the very images
``/dataset`` returns for them. It is written to ``OUT`` as

* ``part-00003-of-00016.tar``: the WebDataset tar of :func:`service.archives.tar_chunks`, with the samples'
  global keys (``p`` zero-padded to the digits of ``N - 1``): ``<key>.png``, ``<key>.cls``, ``<key>.json``;
* ``part-00003-of-00016.json``: the manifest, written last: what was asked (``run``), the tar's size and
  sha256, and what made it (model sha256, onnxruntime and numpy versions, CPU model and flags).

Resume: a shard whose manifest is present, describes this run and matches the tar's size and sha256 is
complete and skipped; anything else (no manifest, a torn one, a tar that is missing, short or altered) is
redone. Both files are written under a temporary name, fsynced, then renamed into place, and the manifest
only after the tar, so a crash at any point leaves a shard that does not look complete. A complete shard
of a *different* run (another model version, seed, labels or shard count) is never overwritten: the run
stops with an error, as mixing two runs in one directory would corrupt the data set.

Progress: on a terminal, a bar on stderr per shard written (``--quiet`` turns it off).

Exit status: 0 when every shard asked for is complete, 2 for bad input (a one-line reason), 1 when
writing fails.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import platform
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy
import onnxruntime
from tqdm import tqdm

import cgan_contract as contract
from service.archives import DatasetPlan, tar_end, tar_samples
from service.config import Settings
from service.models import LoadedModel, Loader, ModelRefused

#: 2: shards are runs of ``run.order`` (format 1 had no order: samples in class order).
MANIFEST_FORMAT = 2
#: CPU features that change which onnxruntime kernels run, and so may change the last bit of an image.
_CPU_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve",
)  # fmt: skip


class BulkError(Exception):
    """Bad input: a one-line reason for the user, exit status 2."""


@dataclass(frozen=True)
class BulkJob:
    """Everything that decides a shard's bytes, resolved and checked (see :func:`plan_job`)."""

    models_dir: Path
    model: str
    version: int
    model_sha256: str
    labels: tuple[int, ...]
    per_label: int
    seed: int
    shards: int
    out: Path
    batch: int = 1024
    png_compress_level: int = 1
    order: contract.Order = contract.DEFAULT_ORDER

    @property
    def total(self) -> int:
        return len(self.labels) * self.per_label

    def span(self, index: int) -> tuple[int, int]:
        """Positions ``[start, stop)`` of shard ``index``."""
        return index * self.total // self.shards, (index + 1) * self.total // self.shards

    def stem(self, index: int) -> str:
        return f"part-{index:05d}-of-{self.shards:05d}"

    def run_record(self, index: int) -> dict[str, Any]:
        """What a finished shard must have been asked for to count as this run's shard ``index``."""
        start, stop = self.span(index)
        return {
            "model": self.model,
            "version": self.version,
            "model_sha256": self.model_sha256,
            "labels": list(self.labels),
            "per_label": self.per_label,
            "seed": self.seed,
            "order": self.order,
            "shards": self.shards,
            "shard": index,
            "samples": [start, stop],
            "png_compress_level": self.png_compress_level,
        }


# --- planning: turning flags into a checked job ---------------------------------------------------------


def plan_job(
    models_dir: Path,
    model: str,
    version: int | None,
    labels: Sequence[str] | None,
    per_label: int,
    seed: int,
    shards: int,
    out: Path,
    batch: int = 1024,
    png_compress_level: int = 1,
    order: str = contract.DEFAULT_ORDER,
) -> BulkJob:
    """Resolve the model version and labels and check every number; :class:`BulkError` says what is wrong.

    Reads the model card only; the model itself is loaded and verified by whoever runs a shard.
    """
    if per_label < 1:
        raise BulkError(f"--per-label must be at least 1, got {per_label}")
    if shards < 1:
        raise BulkError(f"--shards must be at least 1, got {shards}")
    if batch < 1:
        raise BulkError(f"--batch must be at least 1, got {batch}")
    if not 0 <= png_compress_level <= 9:
        raise BulkError(f"--png-compress-level must be 0..9, got {png_compress_level}")
    if order not in contract.ORDERS:
        raise BulkError(f"--order must be one of {', '.join(contract.ORDERS)}, got {order!r}")
    if not contract.valid_model_name(model):
        raise BulkError(f"--model {model!r} is not a valid model name ({contract.MODEL_NAME_PATTERN})")
    if not models_dir.is_dir():
        raise BulkError(f"--models-dir {str(models_dir)!r} is not a directory")
    versions = dict(contract.version_dirs(models_dir / model))
    if not versions:
        raise BulkError(f"--model {model!r}: no version directory under {str(models_dir / model)!r}")
    if version is None:
        version = max(versions)
    elif version not in versions:
        raise BulkError(f"--version {version} of {model!r} not found; versions: {sorted(versions)}")
    try:
        card = contract.read_card(versions[version])
    except (OSError, ValueError) as e:
        reason = str(e).splitlines()[0]
        raise BulkError(f"{model} v{version}: {contract.CARD_FILE} cannot be read: {reason}") from None
    if labels is None:
        resolved = tuple(range(card.num_classes))
    else:
        resolved = []
        for given in labels:
            try:
                resolved.append(card.label_index(given))
            except ValueError as e:
                raise BulkError(f"--labels: {e}") from None
        resolved = tuple(resolved)
        if len(set(resolved)) != len(resolved):
            raise BulkError(f"--labels: each label may appear once, got {list(labels)}")
    total = len(resolved) * per_label
    if shards > total:
        raise BulkError(f"--shards {shards} exceeds the {total} images: a shard would be empty")
    if not 0 <= seed <= contract.MAX_SEED - total + 1:
        raise BulkError(
            f"--seed must be 0..MAX_SEED - images + 1 ({contract.MAX_SEED - total + 1}), got {seed}"
        )
    return BulkJob(
        models_dir,
        model,
        version,
        card.sha256,
        resolved,
        per_label,
        seed,
        shards,
        out,
        batch,
        png_compress_level,
        order,  # type: ignore[arg-type]
    )


def shard_index(
    flag: int | None, shards: int, environ: dict[str, str] | os._Environ[str] = os.environ
) -> int:
    """The shard to write: ``--shard``, else Kubernetes' ``JOB_COMPLETION_INDEX``."""
    if flag is None:
        raw = environ.get("JOB_COMPLETION_INDEX")
        if raw is None:
            raise BulkError("no shard given: pass --shard I, set JOB_COMPLETION_INDEX, or use --all or --ray")
        try:
            flag = int(raw)
        except ValueError:
            raise BulkError(f"JOB_COMPLETION_INDEX must be an integer, got {raw!r}") from None
    if not 0 <= flag < shards:
        raise BulkError(f"shard index {flag} is out of range 0..{shards - 1} for --shards {shards}")
    return flag


# --- running a shard ------------------------------------------------------------------------------------


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
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verified_manifest(job: BulkJob, index: int) -> dict[str, Any] | None:
    """The manifest of a complete, intact shard ``index`` of this job, or ``None`` when it must be (re)done.

    Raises :class:`BulkError` when the directory holds a complete shard of another run.
    """
    tar, manifest_path = job.out / f"{job.stem(index)}.tar", job.out / f"{job.stem(index)}.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        recorded, size, sha256 = manifest["run"], manifest["tar_bytes"], manifest["tar_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or torn: the shard is not complete
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
        if tar.stat().st_size != size or file_sha256(tar) != sha256:
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
    directory = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
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
    job: BulkJob, index: int, get_model: Callable[[], LoadedModel], show_progress: bool = False
) -> dict[str, Any]:
    """Make shard ``index`` complete: skip it when verified, else (re)write it with ``get_model()``'s
    model (called only then, so a rerun of finished shards loads nothing). Returns a summary.
    ``show_progress``: a bar on stderr while it writes, when stderr is a terminal."""
    job.out.mkdir(parents=True, exist_ok=True)
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
    # a crashed attempt at this shard left behind.
    (job.out / f"{stem}.json").unlink(missing_ok=True)
    for leftover in job.out.glob(f".{stem}.*.tmp"):
        leftover.unlink(missing_ok=True)
    model = get_model()
    plan = DatasetPlan(model, job.labels, job.per_label, job.seed, job.batch, order=job.order)
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
    """Shards one after another in this process, loading the model once (and only if a shard needs it)."""
    get_model = functools.cache(functools.partial(load_model, job, threads))
    return [run_shard(job, index, get_model, show_progress) for index in shards]


# --- command line ---------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cgan-bulk",
        description="Write labelled images as sharded WebDataset tars (part-00003-of-00016.tar + manifest).",
    )
    p.add_argument("--models-dir", type=Path, required=True, help="MODELS_DIR: <name>/<version>/model.onnx")
    p.add_argument("--model", required=True, help="model name")
    p.add_argument("--version", type=int, help="model version (default: the newest); pin it for a job")
    p.add_argument("--labels", nargs="+", metavar="LABEL", help="labels (indices or class names), in order")
    p.add_argument("--per-label", type=int, required=True, help="images per label")
    p.add_argument("--seed", type=int, default=0, help="image j of the set uses seed + j (default 0)")
    p.add_argument(
        "--order",
        default=contract.DEFAULT_ORDER,
        help=f"the order of the samples across shards: {' or '.join(contract.ORDERS)} (default "
        f"{contract.DEFAULT_ORDER}: every shard holds every label in equal shares; by_class: the order before"
        " "
        "this flag, each shard two or three labels)",
    )
    p.add_argument("--shards", type=int, required=True, help="K, the number of shards")
    p.add_argument("--out", type=Path, required=True, help="output directory (shared by all shards)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--shard", type=int, help="the shard to write (default: $JOB_COMPLETION_INDEX)")
    which.add_argument("--all", action="store_true", help="write every shard, one after another")
    which.add_argument("--ray", metavar="ADDRESS", help="write every shard as a task on this Ray cluster")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads per process (0: one per core)")
    p.add_argument("--batch", type=int, default=1024, help="images per model run (default 1024)")
    p.add_argument("--png-compress-level", type=int, default=1, help="zlib level 0..9 (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (it is shown on a terminal only)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        job = plan_job(
            args.models_dir, args.model, args.version, args.labels, args.per_label, args.seed, args.shards,
            args.out, args.batch, args.png_compress_level, args.order,
        )  # fmt: skip
        if args.threads < 0:
            raise BulkError(f"--threads must be 0 or more, got {args.threads}")
        began = time.perf_counter()
        if args.ray is not None:
            from service import bulk_ray

            results = bulk_ray.run(job, range(job.shards), args.ray)
        elif args.all:
            results = run_all(job, range(job.shards), args.threads, not args.quiet)
        else:
            results = run_all(job, [shard_index(args.shard, job.shards)], args.threads, not args.quiet)
    except BulkError as e:
        print(f"cgan-bulk: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"cgan-bulk: error: {e}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - began
    for r in results:
        rate = f", {r['images'] / r['seconds']:.0f} images/s" if r["seconds"] else ""
        print(
            f"{r['tar']}: {r['status']} ({r['images']} images{rate}) sha256 {r['tar_sha256']}",
            file=sys.stderr,
        )
    written = sum(r["images"] for r in results if r["status"] == "written")
    print(
        json.dumps({"job": asdict(job) | {"models_dir": str(job.models_dir), "out": str(job.out)},
                    "shards": results, "images_written": written, "seconds": round(seconds, 3)}),
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    # service.bulk's main, not this __main__ copy's: exceptions from Ray tasks are service.bulk's classes.
    from service import bulk

    sys.exit(bulk.main())
