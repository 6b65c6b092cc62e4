"""``cgan-bulk`` / ``python -m service.bulk``: the command line (see :mod:`service.bulk`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import cgan_contract as contract
from service.bulk import on_ray
from service.bulk.planning import BulkError, plan_job, shard_index
from service.bulk.shards import run_all


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
            results = on_ray.run(job, range(job.shards), args.ray)
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
