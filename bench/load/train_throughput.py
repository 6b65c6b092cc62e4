"""Training throughput: the article's loop vs this trainer (dense), and the default conv recipe now vs before.

    python -m bench.load.train_throughput [--article-steps 300] [--steps 1500]
    python -m bench.load.train_throughput --conv-only [--baseline 87ba2db] [--rounds 3] [--conv-steps 300]

The conv rows train the default recipe (``cgan-train train --dataset mnist-5k``) in fresh processes that
take turns, ``--rounds`` times each, keeping each one's best: the code at ``--baseline`` (a git revision:
by default main before the round-two training work), this tree in float32, and this tree as the default
recipe resolves here (bfloat16 on a CPU with AVX512-BF16 or AMX). Prints tables of images/s and ratios;
writes bench/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.harness import REPO, fmt, machine, markdown_table, write_json  # noqa: E402

#: main before the round-two training work (fused BatchNorm and Adam, bfloat16 compute).
BASELINE = "87ba2db"

# Runs in a fresh process on the tree it is pointed at, through functions both trees have, so the
# baseline is measured by its own code and not by a re-creation of it.
CONV_PROBE = r"""
import dataclasses, json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf
from trainer.config import TrainConfig
from trainer.data import load_dataset, tf_dataset
from trainer.train import build_model, make_runner
steps, dtype = int(sys.argv[1]), sys.argv[2]
config = TrainConfig.for_dataset("mnist-5k")
if dtype != "default":
    config = dataclasses.replace(config, recipe=dataclasses.replace(config.recipe, compute_dtype=dtype))
data = load_dataset("mnist-5k")
gan = build_model(config, data)
iterator = iter(tf_dataset(data.train, config.batch_size, 0))
run = make_runner(gan, False)
float(run(iterator, tf.constant(20))["d_loss"])
began = time.perf_counter()
float(run(iterator, tf.constant(steps))["d_loss"])
seconds = time.perf_counter() - began
dtype = getattr(config.recipe, "compute_dtype", "float32")
print("PROBE " + json.dumps({"images_per_s": steps * config.batch_size / seconds, "compute_dtype": dtype}))
"""


def ours(dataset, variant, arch, recipe, batch_size, steps, jit):
    import tensorflow as tf

    from trainer.data import tf_dataset
    from trainer.train import in_blocks, make_runner
    from trainer.variants import Spec, build

    gan = build(variant, Spec(100, dataset.num_classes, dataset.image_shape, arch), recipe)
    gan.compile()
    batches = tf_dataset(dataset.train, batch_size, 0)
    iterator = iter(in_blocks(batches) if jit else batches)
    run = make_runner(gan, jit)
    float(run(iterator, tf.constant(20))["d_loss"])  # trace + compile outside the timing
    chunk = 250
    began = time.perf_counter()
    done = 0
    while done < steps:
        k = min(chunk, steps - done)
        float(run(iterator, tf.constant(k))["d_loss"])
        done += k
    return steps * batch_size / (time.perf_counter() - began)


def dense_rows(article_steps: int, steps: int) -> list[tuple]:
    from bench.load.article_cgan import article_loop
    from trainer.config import ARTICLE
    from trainer.data import load_dataset

    data = load_dataset("mnist-5k")
    baseline = article_loop(data.train.images, data.train.labels, article_steps)
    rows = [("article loop (predict + 3x train_on_batch)", "cgan", "dense", 32, baseline)]
    for variant, jit in [("cgan", False), ("cgan", True), ("acgan", True)]:
        label = f"trainer, {'XLA' if jit else 'graph'}"
        rows.append((label, variant, "dense", 32, ours(data, variant, "dense", ARTICLE, 32, steps, jit)))
    return rows


def baseline_tree(revision: str, into: Path) -> Path | None:
    """The repository at ``revision`` unpacked under ``into``; None if there is no such revision here."""
    archive = into / "baseline.tar"
    with archive.open("wb") as out:
        done = subprocess.run(
            ["git", "-C", str(REPO), "archive", revision], stdout=out, stderr=subprocess.PIPE
        )
    if done.returncode != 0:
        print(f"no baseline: git archive {revision}: {done.stderr.decode().strip()}")
        return None
    tree = into / revision
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def probe(tree: Path, steps: int, dtype: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", CONV_PROBE, str(steps), dtype],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("PROBE ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"conv probe failed on {tree} ({dtype}): {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(line[len("PROBE ") :])


def conv_rows(revision: str, rounds: int, steps: int) -> list[dict]:
    """The default conv recipe: the code at ``revision``, this tree in float32, this tree as it resolves."""
    with tempfile.TemporaryDirectory() as tmp:
        old = baseline_tree(revision, Path(tmp))
        targets = [(f"{revision} (before)", old, "default")] if old else []
        targets += [("this tree, float32", REPO, "float32"), ("this tree, default", REPO, "default")]
        runs: dict[str, list[dict]] = {name: [] for name, _, _ in targets}
        for _ in range(rounds):
            for name, tree, dtype in targets:
                runs[name].append(probe(tree, steps, dtype))
    return [
        {
            "code": name,
            "compute_dtype": results[0]["compute_dtype"],
            "images_per_s": max(r["images_per_s"] for r in results),
            "rounds": [round(r["images_per_s"], 1) for r in results],
        }
        for name, results in runs.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--article-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=1500, help="dense steps per row")
    parser.add_argument("--conv-only", action="store_true", help="only the conv default, before vs now")
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the 'before' conv row")
    parser.add_argument("--rounds", type=int, default=3, help="turns each conv row takes (best kept)")
    parser.add_argument("--conv-steps", type=int, default=300, help="timed steps per conv turn")
    args = parser.parse_args()

    meta = machine()
    print(
        f"machine: {meta.get('cpu_model', '?')}, {meta['cpus_affinity']} CPUs; "
        f"load average at start {meta['loadavg_at_start'][0]:.2f}"
    )
    results: dict[str, object] = {"meta": meta}
    if not args.conv_only:
        rows = dense_rows(args.article_steps, args.steps)
        baseline = rows[0][-1]
        print(f"{'loop':44} {'model':6} {'arch':5} {'batch':>5} {'images/s':>9} {'x article':>9}")
        for loop, variant, arch, batch, ips in rows:
            print(f"{loop:44} {variant:6} {arch:5} {batch:5d} {ips:9.0f} {ips / baseline:8.1f}x")
        keys = ["loop", "model", "arch", "batch", "images_per_s"]
        results["dense"] = [dict(zip(keys, r, strict=True)) for r in rows]

    conv = conv_rows(args.baseline, args.rounds, args.conv_steps)
    before = conv[0]["images_per_s"]
    print(
        f"\nconv default recipe (mnist-5k, batch 64), best of {args.rounds} turns of {args.conv_steps} steps:"
    )
    table = [
        [
            row["code"],
            row["compute_dtype"],
            fmt(row["images_per_s"]),
            " / ".join(fmt(r, 0) for r in row["rounds"]),
            f"{row['images_per_s'] / before:.2f}x",
        ]
        for row in conv
    ]
    print(markdown_table(["code", "compute dtype", "images/s", "each turn", "x before"], table))
    results["conv"] = conv
    results["load_end"] = os.getloadavg()
    print(f"load average at end {results['load_end'][0]:.2f}")
    write_json("train_throughput.json", results)


if __name__ == "__main__":
    main()
