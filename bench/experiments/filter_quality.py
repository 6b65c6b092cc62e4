"""Label accuracy of `/dataset` with and without `min_confidence`, the acceptance rate and (``--gan-train``)
what a classifier trained on each set learns, as a table.

    python -m bench.experiments.filter_quality                      # the bundled model, 1,000 per class
    python -m bench.experiments.filter_quality --per-label 100 --second-judge
    python -m bench.experiments.filter_quality --min-confidence 0 0.5 0.9 0.99 --second-judge --gan-train 3

Runs the data plane in-process on the bundled model (what ``POST /dataset`` streams, byte for byte) and
scores the images with the model's own judge (``judge.onnx``, the evaluation judge). That judge is also the
filter, so with the filter its accuracy is 100% by construction; ``--second-judge`` also scores with a CNN
trained on the same real digits with another seed and the probe's smaller architecture (needs the trainer,
~1-3 min on 2 cores), which the filter has never seen.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np

from service import dataplane
from service.config import Settings
from service.dataplane import ArchiveRequest
from service.runtime import Runtime


def second_judge():
    """A classifier independent of the filter: other seed, other (probe) architecture, same real digits."""
    import dataclasses

    from trainer.data import load_dataset
    from trainer.evaluation.judge import JUDGE_CONFIG, PROBE_CONFIG, fit_cnn, predict_labels

    dataset = load_dataset("mnist-5k")
    config = dataclasses.replace(PROBE_CONFIG, seed=1, max_shift=JUDGE_CONFIG.max_shift, epochs=20)
    model = fit_cnn(dataset.train.images, dataset.train.labels, dataset.num_classes, config)
    test_accuracy = float(np.mean(predict_labels(model, dataset.test.images) == dataset.test.labels))
    return (lambda images: predict_labels(model, images)), test_accuracy


def gan_train(probe_seeds: int):
    """Train-on-synthetic: the evaluation's probe CNN (trainer.evaluation, PROBE_CONFIG) fitted on a set,
    scored on the real test split, once per seed; returns (mean, min, max) and the real-train figure."""
    from trainer.data import load_dataset
    from trainer.evaluation.judge import PROBE_CONFIG
    from trainer.evaluation.pipeline import probe_accuracy

    dataset = load_dataset("mnist-5k")

    def score(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
        runs = [probe_accuracy(dataset, x, y, PROBE_CONFIG, seed) for seed in range(probe_seeds)]
        return float(np.mean(runs)), min(runs), max(runs)

    return score, score(dataset.train.images, dataset.train.labels)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-label", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--min-confidence",
        type=float,
        nargs="+",
        default=[0.99],
        help="one row per threshold (0: drop only off-label images)",
    )
    parser.add_argument("--truncation", type=float, help="also a row with this truncation (and no filter)")
    parser.add_argument("--version", type=int, help="model version (default: the served default)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--second-judge", action="store_true")
    parser.add_argument(
        "--gan-train",
        type=int,
        default=0,
        metavar="SEEDS",
        help="also GAN-train of each set: probe CNNs with this many seeds, on the real test split",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as empty:
        settings = Settings(
            models_dir=Path(empty), bundled_models=True, ort_intra_op_threads=args.threads, reload_interval=0
        )
        runtime = Runtime(settings)
        runtime.registry.scan()
        name = runtime.registry.default_name()
        model = (
            runtime.registry.models[name]
            if args.version is None
            else runtime.registry.loaded[name][args.version]
        )
        other, other_test = second_judge() if args.second_judge else (None, None)
        score, real = gan_train(args.gan_train) if args.gan_train else (None, None)
        print(
            f"model {model.name} v{model.version} ({model.card.precision}); "
            f"{args.per_label} per class, seed {args.seed}"
        )
        if other_test is not None:
            print(f"second judge: test accuracy {other_test:.2%} on the 500 held-out real digits")
        if real is not None:
            print(f"real-train (the 4,500 real training digits): {real[0]:.2%} ({real[1]:.2%}-{real[2]:.2%})")
        print(
            "| truncation | min_confidence | images | acceptance rate | label accuracy (judge.onnx) "
            "| min p(label) | label accuracy (second judge) | GAN-train (seeds' range) | seconds |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        rows = [(None, None), *((None, c) for c in args.min_confidence)]
        if args.truncation is not None:
            rows.append((args.truncation, None))
        for truncation, confidence in rows:
            start = time.perf_counter()
            request = ArchiveRequest(
                model=model.name,
                version=model.version,
                per_label=args.per_label,
                seed=args.seed,
                min_confidence=confidence,
                truncation=truncation,
            )
            archive = dataplane.archive(runtime, request)
            data = np.load(io.BytesIO(b"".join(archive.chunks)))
            seconds = time.perf_counter() - start
            x, y = data["x"], data["y"]
            p = np.concatenate([model.classify(x[i : i + 1024, ..., None]) for i in range(0, len(x), 1024)])
            accuracy = float(np.mean(p.argmax(axis=1) == y))
            second = "-" if other is None else f"{np.mean(other(x) == y):.2%}"
            trained = "-"
            if score is not None:
                mean, low, high = score(x, y)
                trained = f"{mean:.2%} ({low:.2%}-{high:.2%})"
            rate = archive.plan.acceptance_rate
            print(
                f"| {truncation or 'none'} | {'none' if confidence is None else confidence} | {len(x)} | "
                f"{'-' if rate is None else f'{rate:.2%}'} | {accuracy:.2%} | "
                f"{p[np.arange(len(y)), y].min():.3f} | {second} | {trained} | {seconds:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
