"""``python -m service.bulk`` / ``cgan-bulk``: many labelled images as sharded WebDataset tars.

Needs only the service install (onnxruntime; never TensorFlow). One process writes one shard (a pod of an
Indexed Job, ``JOB_COMPLETION_INDEX``), every shard in turn (``--all``), or every shard as a Ray task
(``--ray ADDRESS``, :mod:`service.bulk.on_ray`); each way writes the same bytes for the same shard.

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

and, once per directory, ``bulk-run.json``: the run ``OUT`` belongs to (:mod:`.outdir`).

One directory, one run: the first process of a run writes ``bulk-run.json``; a process of a *different*
run (another model version, seed, labels, order, PNG level or shard count) stops with exit status 2 and
a one-line reason, before writing anything, as mixing two runs in one directory would corrupt the data
set (``--shards 2`` and ``--shards 3`` would hold the same keys twice). A directory written before run
files existed is judged by its manifests.

Resume: a shard whose manifest is present, describes this run and matches the tar's size and sha256 is
complete and skipped; anything else (no manifest, a torn one, a tar that is missing, short or altered,
either file not a regular file) is redone. Both files are written under a temporary name, fsynced, then
renamed into place, and the manifest only after the tar, so a crash at any point leaves a shard that does
not look complete. A process writing a shard holds its lock (``.part-00003-of-00016.lock``, flock): a
second writer of the same shard waits, then finds it complete, so neither deletes the other's files.

Progress: on a terminal, a bar on stderr per shard written (``--quiet`` turns it off).

Exit status: 0 when every shard asked for is complete, 2 for bad input (a one-line reason), 1 when
writing fails.

The package: :mod:`.planning` (flags -> a checked job), :mod:`.outdir` (the run a directory belongs to,
shard locks, regular files only), :mod:`.shards` (writing and verifying one shard), :mod:`.on_ray`
(shards as Ray tasks), :mod:`.cli` (the command line).
"""

from service.bulk.cli import main, parser
from service.bulk.outdir import RUN_FILE
from service.bulk.planning import BulkError, BulkJob, plan_job, shard_index
from service.bulk.shards import (
    MANIFEST_FORMAT,
    cpu_info,
    file_sha256,
    load_model,
    run_all,
    run_shard,
    verified_manifest,
)

__all__ = [
    "MANIFEST_FORMAT",
    "RUN_FILE",
    "BulkError",
    "BulkJob",
    "cpu_info",
    "file_sha256",
    "load_model",
    "main",
    "parser",
    "plan_job",
    "run_all",
    "run_shard",
    "shard_index",
    "verified_manifest",
]
