"""The bulk generator's shards as Ray tasks (``cgan-bulk --ray ADDRESS``; needs the ``ray`` extra).

Each shard is one task asking for one CPU, running :func:`service.bulk.shards.run_shard` unchanged on
whichever node Ray picks, so a shard's bytes do not depend on where or how it ran. ``OUT`` and
``MODELS_DIR`` must be the same paths on every node (a shared file system). A task that dies with its
worker or node is retried by Ray; as with a retried pod, the resume rules of :mod:`service.bulk` make that
safe: a shard finished by an earlier attempt is skipped, and one still being written by an attempt that
lives on holds the shard's lock, so the retry waits for it rather than writing beside it.

A worker process keeps the model it loaded for the tasks that follow on it, so K shards on W workers load
the model W times, not K.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from service.bulk.planning import BulkError, BulkJob
from service.bulk.shards import load_model, run_shard
from service.models import LoadedModel

_loaded: dict[tuple[str, int, str, int], LoadedModel] = {}


def _shard_task(job: BulkJob, index: int, threads: int) -> dict[str, Any]:
    import ray

    def get_model() -> LoadedModel:
        key = (str(job.models_dir), job.version, job.model_sha256, threads)
        if key not in _loaded:
            _loaded[key] = load_model(job, threads)
        return _loaded[key]

    return {**run_shard(job, index, get_model), "node": ray.get_runtime_context().get_node_id()}


def run(job: BulkJob, shards: Iterable[int], address: str, threads: int = 1) -> list[dict[str, Any]]:
    """Run ``shards`` of ``job`` as tasks on the Ray cluster at ``address``; their summaries, in order.

    ``threads`` onnxruntime threads per task, matching the one CPU each task reserves.
    """
    try:
        import ray
    except ImportError:
        raise BulkError("--ray needs Ray: install the 'ray' extra (requirements/ray.txt)") from None
    job.out.mkdir(parents=True, exist_ok=True)
    with _stderr_to(job.out / RAY_LOG):
        return _run(ray, job, shards, address, threads)


#: Where the driver's own Ray log goes (in the output directory), so the CLI's stderr stays one line.
RAY_LOG = "ray-driver.log"


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Point file descriptor 2 at ``path`` while Ray runs: Ray's C++ core worker writes its own error lines
    (e.g. "Failed to push error to driver") straight to it, beside the one-line reason this CLI gives."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with path.open("ab") as log:
            os.dup2(log.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _run(ray: Any, job: BulkJob, shards: Iterable[int], address: str, threads: int) -> list[dict[str, Any]]:
    try:
        ray.init(address=address, log_to_driver=False, logging_level="warning")
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise BulkError(f"--ray {address!r}: cannot connect: {str(e).splitlines()[0]}") from None
    try:
        # SPREAD: shards go to every node rather than filling the first, so output and model loads spread too.
        task = ray.remote(num_cpus=1, max_retries=2, scheduling_strategy="SPREAD")(_shard_task)
        refs = [task.remote(job, index, threads) for index in shards]
        try:
            return ray.get(refs)
        except ray.exceptions.RayTaskError as e:
            cause = e.cause  # the shard's own exception, for a one-line report
            if isinstance(cause, BulkError | OSError):
                raise cause from None
            raise
    finally:
        ray.shutdown()
