"""Bulk throughput (issue #30, item 5): ``/dataset`` and ``cgan-bulk`` images/s against the raw model's best
batch, with the default version (the bundled conv model's INT8 twin under PRECISION=auto).

    python -m bench.load.bulk_throughput            # 10,000 images per figure (~3 min on 2 cores)
    python -m bench.load.bulk_throughput --quick    # 2,000
    python -m bench.load.bulk_throughput --fake --quick   # the tests' tiny model (what CI runs)

* **raw**: ``LoadedModel.generate`` in this process at batches 64, 256 and 1,024, best of one caller with
  every core's onnxruntime threads and one caller per core with one thread each: the model alone, no
  encoding. The reference both paths are held to (>= 0.9x).
* **/dataset**: ``python -m service`` as deployed (default settings), ``POST /dataset`` of the whole set as
  ``npz`` and as ``tar`` (a PNG per image), read to the end: one request alone, and one per core at once
  (each its own seed), images/s over the wall time of the requests.
* **cgan-bulk**: ``cgan-bulk --all`` (tar shards, a PNG per image, ``--threads 0``) as a user runs it; its
  own ``seconds`` (the run, not the interpreter's start) and the wall time of the whole command.

Writes ``bench/results/bulk_throughput.json`` with a goals table that ``bench.load.performance`` reads.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import cgan_contract as contract
from bench.harness import (
    REPO,
    fake_models_dir,
    fmt,
    in_process,
    machine,
    markdown_table,
    service_server,
    write_json,
)

BATCHES = (64, 256, 1024)
CONV = "mnist-5k-cgan-conv"


def raw_rate(models_dir: Path, name: str, images: int) -> dict:
    """The model alone at its best batch and thread layout, images/s."""
    from service.config import available_cores
    from service.dataplane.resolve import resolve_model

    cores = available_cores()
    best: dict = {"images_per_s": 0.0}
    for callers, threads in ((1, cores), (cores, 1)):
        model = resolve_model(in_process(models_dir, name, threads), name, None)
        for batch in BATCHES:
            labels = np.arange(batch, dtype=np.int64) % model.card.num_classes
            rounds = max(1, images // (batch * callers))

            def work(first: int, labels=labels, batch=batch, rounds=rounds, model=model) -> None:
                for r in range(rounds):
                    model.generate(labels, contract.request_seeds(first + r * batch, batch))

            work(0)  # warm
            began = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(callers) as pool:
                list(pool.map(work, [c * 10**6 for c in range(callers)]))
            rate = rounds * batch * callers / (time.perf_counter() - began)
            if rate > best["images_per_s"]:
                best = {
                    "images_per_s": rate,
                    "batch": batch,
                    "config": f"{callers} caller(s) x {threads} ORT thread(s)",
                    "version": f"v{model.version} ({model.card.precision})",
                }
    return best


def dataset_rates(models_dir: Path, name: str, per_label: int, classes: int) -> list[dict]:
    """``POST /dataset`` against the service as deployed: alone and one request per core at once."""
    import httpx

    from service.config import available_cores

    cores = available_cores()
    rows = []
    with service_server(models_dir, name) as server:
        server.wait_ready(timeout=300)

        def fetch(fmt_name: str, seed: int) -> int:
            body = {"per_label": per_label, "format": fmt_name, "seed": seed}
            size = 0
            with httpx.stream("POST", server.url + "/dataset", json=body, timeout=600) as response:
                if response.status_code != 200:
                    raise RuntimeError(
                        f"/dataset {fmt_name}: {response.status_code} {response.read()[:300]!r}"
                    )
                for chunk in response.iter_bytes():
                    size += len(chunk)
            return size

        for fmt_name in ("npz", "tar"):
            fetch(fmt_name, 0)  # warm: the first archive pays the model's first runs
            for concurrent_requests in (1, cores):
                began = time.perf_counter()
                with concurrent.futures.ThreadPoolExecutor(concurrent_requests) as pool:
                    sizes = list(
                        pool.map(lambda s, f=fmt_name: fetch(f, s), range(1, concurrent_requests + 1))
                    )
                seconds = time.perf_counter() - began
                images = concurrent_requests * per_label * classes
                rows.append(
                    {
                        "path": f"/dataset {fmt_name}",
                        "requests": concurrent_requests,
                        "images": images,
                        "seconds": seconds,
                        "images_per_s": images / seconds,
                        "mb": sum(sizes) / 1e6,
                    }
                )
    return rows


def bulk_rate(models_dir: Path, name: str, per_label: int, classes: int) -> dict:
    """``cgan-bulk --all`` as a user runs it (a fresh output directory)."""
    with tempfile.TemporaryDirectory(prefix="bulk-throughput-") as out:
        argv = [sys.executable, "-m", "service.bulk", "--models-dir", str(models_dir), "--model", name]
        argv += ["--per-label", str(per_label), "--shards", "2", "--out", out, "--all", "--quiet"]
        began = time.perf_counter()
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=1800, check=False)
        wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"cgan-bulk exited {done.returncode}: {done.stderr[-500:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    images = report["images_written"]
    return {
        "path": "cgan-bulk --all (tar)",
        "requests": 1,
        "images": images,
        "seconds": report["seconds"],
        "images_per_s": images / report["seconds"],
        "wall_images_per_s": images / wall,
    }


def goals(raw: dict, rows: list[dict]) -> list[list[str]]:
    """Each path's best images/s against the raw model's best batch: >= 0.9x."""
    out = []
    for path in dict.fromkeys(r["path"] for r in rows):
        best = max((r for r in rows if r["path"] == path), key=lambda r: r["images_per_s"])
        ratio = best["images_per_s"] / raw["images_per_s"]
        what = (
            f"bulk: {path} ({best['requests']} at once) {fmt(best['images_per_s'], 0)} vs raw "
            f"{fmt(raw['images_per_s'], 0)} images/s (batch {raw['batch']})"
        )
        out.append([what, f"{ratio:.2f}x", ">= 0.9x", "pass" if ratio >= 0.9 else "miss"])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="200 images per label instead of 1,000")
    p.add_argument("--fake", action="store_true", help="the tests' tiny ONNX model (no bundled model)")
    p.add_argument("--per-label", type=int, help="images per label (1000; 200 with --quick)")
    p.add_argument("--json-name", default="bulk_throughput.json", help="file name under bench/results/")
    args = p.parse_args(argv)
    per_label = args.per_label or (200 if args.quick else 1000)
    if args.fake:
        models_dir, name = fake_models_dir()
    else:
        from service.config import BUNDLED_DIR

        models_dir, name = BUNDLED_DIR, CONV
    classes = contract.read_card(contract.version_dirs(models_dir / name)[-1][1]).num_classes
    meta = machine()
    raw = raw_rate(models_dir, name, per_label * classes)
    print(
        f"# raw: {raw['images_per_s']:.0f} images/s, {raw['version']}, batch {raw['batch']}, {raw['config']}"
    )
    rows = dataset_rates(models_dir, name, per_label, classes)
    rows.append(bulk_rate(models_dir, name, per_label, classes))
    print(f"\n### Bulk throughput ({meta['cpus_affinity']} CPUs, {meta.get('cpu_model', '?')})\n")
    table = [
        [r["path"], r["requests"], f"{r['images']:,}", fmt(r["seconds"], 2), fmt(r["images_per_s"], 0)]
        for r in rows
    ]
    table.insert(0, ["raw model (generate only)", 1, "-", "-", fmt(raw["images_per_s"], 0)])
    print(markdown_table(["path", "at once", "images", "seconds", "images/s"], table))
    found = goals(raw, rows)
    print()
    print(markdown_table(["goal", "value", "target", "result"], found))
    path = write_json(args.json_name, {"meta": meta, "raw": raw, "rows": rows, "goals": found})
    print(f"\nwrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
