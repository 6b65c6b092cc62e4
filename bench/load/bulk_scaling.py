"""Bulk generation scaling: images/s of one process, of Ray with 1 and 2 workers, and what N nodes give.

    python -m bench.load.bulk_scaling --models-dir /tmp/bulk-models --model conv  # ~2-3 min on 2 cores
    python -m bench.load.bulk_scaling                           # trains the bench model once
    python -m bench.load.bulk_scaling --fake --per-label 100    # smoke: the tests' tiny model

One job (``--per-label`` images of every class, ``--shards`` shards), written three times into fresh
directories: by one process (``cgan-bulk --all`` in-process, one onnxruntime thread), by Ray on a local
cluster of one node with one CPU, and by Ray on two nodes of one CPU each
(``cgan_testing/ray_cluster.py``: real ``ray start`` processes). Each Ray figure is the whole
``bulk_ray.run`` call: connecting, starting a worker per CPU, loading the model in each, writing every
shard. All three runs must give the same shard sha256s.

Also measured in this process: the model alone (``LoadedModel.generate`` per batch, one thread) and the
tar bytes per image, for the N-node estimate. Prints markdown tables; writes bench/results/bulk_scaling.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import fake_models_dir, fmt, machine, markdown_table, resolve_models, write_json
from cgan_testing.ray_cluster import LocalRayCluster
from service import bulk
from service.archives import DatasetPlan
from service.bulk import on_ray as bulk_ray

SHARED_FS_MB_S = (100, 500, 1000)  # write bandwidth of an RWX volume: a small NFS server .. a fast filer


def _model_rate(job: bulk.BulkJob, images: int) -> tuple[float, float]:
    """Images/s of ``LoadedModel.generate`` alone, one thread, in the job's batches: onnxruntime's ceiling."""
    model = bulk.load_model(job, threads=1)
    plan = DatasetPlan(model, job.labels, job.per_label, job.seed, job.batch, order=job.order)
    began, cpu_began = time.perf_counter(), time.process_time()
    for batch in plan.batches(0, min(images, job.total)):
        model.generate(batch.labels, batch.seeds)
    n = min(images, job.total)
    return n / (time.perf_counter() - began), n / (time.process_time() - cpu_began)


def _timed(run, job: bulk.BulkJob) -> tuple[float, float, dict[int, str]]:
    """``(wall seconds of the whole run, CPU seconds spent writing shards, sha256 per shard)``."""
    began = time.perf_counter()
    results = run(job)
    seconds = time.perf_counter() - began
    assert all(r["status"] == "written" for r in results), results
    return seconds, sum(r["cpu_seconds"] for r in results), {r["shard"]: r["tar_sha256"] for r in results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--models-dir", help="MODELS_DIR holding the model (default: the trained bench model)")
    ap.add_argument("--model", help="model name (default: the only one in --models-dir)")
    ap.add_argument(
        "--fake", action="store_true", help="use the tests' tiny ONNX model (a smoke, no figures)"
    )
    ap.add_argument("--per-label", type=int, default=500, help="images per class (default 500: 5k images)")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--batch", type=int, default=256, help="images per model run (default 256)")
    args = ap.parse_args()

    if args.fake:
        root, name = fake_models_dir()
    else:
        root, name, _ = resolve_models(args.models_dir, args.model)
    work = Path(tempfile.mkdtemp(prefix="bulk-scaling-"))
    info = machine()
    print(
        f"# {info.get('cpu_model')}, {info['cpus_affinity']} CPUs, load average {os.getloadavg()}", flush=True
    )

    def job(out: str) -> bulk.BulkJob:
        return bulk.plan_job(root, name, None, None, args.per_label, 0, args.shards, work / out, args.batch)

    try:
        rows: dict[str, tuple[int, float, float]] = {}  # label -> (workers, images/s, images per CPU-second)
        sha: dict[str, dict[int, str]] = {}
        total = job("x").total
        model_rate, model_cpu_rate = _model_rate(job("x"), min(total, 4096))

        seconds, cpu, sha["single"] = _timed(
            lambda j: bulk.run_all(j, range(j.shards), threads=1), job("single")
        )
        rows["one process (1 onnxruntime thread)"] = (1, total / seconds, total / cpu)
        tar_bytes = sum(p.stat().st_size for p in (work / "single").glob("*.tar"))

        for workers in (1, 2):
            print(f"# starting a local Ray cluster of {workers} node(s), 1 CPU each", flush=True)
            with LocalRayCluster([1] * workers) as address:
                seconds, cpu, sha[f"ray{workers}"] = _timed(
                    lambda j, a=address: bulk_ray.run(j, range(j.shards), a), job(f"ray{workers}")
                )
            plural = "s" if workers > 1 else ""
            rows[f"Ray, {workers} worker{plural} ({workers} node{plural})"] = (
                workers,
                total / seconds,
                total / cpu,
            )
        same = sha["single"] == sha["ray1"] == sha["ray2"]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    load_end = os.getloadavg()
    per_image = tar_bytes / total
    (_, single, single_cpu), (_, ray1, _), (_, ray2, _) = rows.values()
    efficiency = ray2 / (2 * ray1)
    print(f"\n## Bulk scaling: {name}, {total} images in {args.shards} shards, batch {args.batch}\n")
    print(
        markdown_table(
            ["run", "workers", "images/s (wall)", "per worker", "vs one process", "images per CPU-second"],
            [
                (label, w, fmt(rate), fmt(rate / w), f"{rate / single:.2f}x", fmt(cpu_rate))
                for label, (w, rate, cpu_rate) in rows.items()
            ],
        )
    )
    print(
        f"\nScaling efficiency, Ray 2 workers vs 2 x Ray 1 worker: {efficiency:.0%}; "
        f"vs 2 x one process: {ray2 / (2 * single):.0%}."
    )
    print(
        f"Model alone (onnxruntime, 1 thread): {fmt(model_rate)} images/s wall, "
        f"{fmt(model_cpu_rate)} per CPU-second; tar: {per_image:.0f} bytes/image."
    )
    print(f"Shards identical across the three runs: {same}. Load average at end: {load_end}.")

    # N nodes, each running one shard process per core. Per core: images per CPU-second of the whole
    # pipeline, which a shared, loaded machine does not distort the way it does wall time; discounted by
    # the measured Ray efficiency (start-up, scheduling). The aggregate write rate lands on the shared volume.
    cores = 2
    node_rate = cores * single_cpu * min(1.0, efficiency)
    print(f"\n## Estimate: N nodes x {cores} cores, {fmt(node_rate)} images/s per node\n")
    table = []
    for nodes in (1, 4, 16, 64):
        rate = nodes * node_rate
        table.append((nodes, fmt(rate), fmt(rate * per_image / 1e6), f"{1e7 / rate / 60:.0f} min"))
    print(markdown_table(["nodes", "images/s", "tar MB/s to the volume", "10M images"], table))
    limits = ", ".join(f"{bw} MB/s: {bw * 1e6 / (node_rate * per_image):.0f} nodes" for bw in SHARED_FS_MB_S)
    print(f"\nNodes a shared volume feeds before its write bandwidth is the limit: {limits}.")

    payload = {
        "machine": info,
        "load_end": load_end,
        "model": name,
        "images": total,
        "shards": args.shards,
        "batch": args.batch,
        "rows": {
            label: {"workers": w, "images_per_s": rate, "images_per_cpu_s": cpu_rate}
            for label, (w, rate, cpu_rate) in rows.items()
        },
        "efficiency_ray2_vs_ray1": efficiency,
        "model_images_per_s": model_rate,
        "model_images_per_cpu_s": model_cpu_rate,
        "tar_bytes_per_image": per_image,
        "node_images_per_s_estimate": node_rate,
        "identical_shards": same,
    }
    print(f"\nwrote {write_json('bulk_scaling.json', payload)}")
    if not same:
        sys.exit("shards differ between runs")


if __name__ == "__main__":
    main()
