"""Training throughput: the article's loop vs this trainer, same networks, same process, same data.

    python bench/train_throughput.py [--article-steps 300] [--steps 1500]

Prints a table of images/s and the ratio to the article's loop; writes bench/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

from bench.article_cgan import article_loop  # noqa: E402
from trainer.config import ARTICLE, MODERN, MODERN_CGAN  # noqa: E402
from trainer.data import load_dataset, tf_dataset  # noqa: E402
from trainer.train import in_blocks, make_runner  # noqa: E402
from trainer.variants import Spec, build  # noqa: E402


def ours(dataset, variant, arch, recipe, batch_size, steps, jit):
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--article-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args()

    data = load_dataset("mnist-5k")
    rows = []
    baseline = article_loop(data.train.images, data.train.labels, args.article_steps)
    rows.append(("article loop (predict + 3x train_on_batch)", "cgan", "dense", 32, baseline))
    for variant, arch, recipe, batch, jit in [
        ("cgan", "dense", ARTICLE, 32, False),
        ("cgan", "dense", ARTICLE, 32, True),
        ("acgan", "dense", ARTICLE, 32, True),
        ("cgan", "conv", MODERN_CGAN, 64, False),
        ("acgan", "conv", MODERN, 64, False),
    ]:
        steps = args.steps if arch == "dense" else args.steps // 4
        label = f"trainer, {'XLA' if jit else 'graph'}"
        rows.append((label, variant, arch, batch, ours(data, variant, arch, recipe, batch, steps, jit)))

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, tensorflow {tf.__version__}")
    print(f"{'loop':44} {'model':6} {'arch':5} {'batch':>5} {'images/s':>9} {'x article':>9}")
    for loop, variant, arch, batch, ips in rows:
        ratio = f"{ips / baseline:.1f}x" if arch == "dense" and batch == 32 else ""
        print(f"{loop:44} {variant:6} {arch:5} {batch:5d} {ips:9.0f} {ratio:>9}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "train_throughput.json").write_text(
        json.dumps(
            [dict(zip(["loop", "model", "arch", "batch", "images_per_s"], r, strict=True)) for r in rows],
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
