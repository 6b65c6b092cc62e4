"""EBGAN: where D's autoencoder hears the label, measured by the label accuracy of G's images.

    python -m bench.experiments.ebgan_conditioning [--arch dense] [--steps 1500] [--per-class 100] \
        [--margin 1.0]

Trains one short run per ``ae_condition`` (mnist-5k, the ebgan recipe of ``--arch``, same seed), then
generates ``--per-class`` images per class from the generator that would be exported (noise by the
contract's seed rule, pixels by its uint8 rule) and scores them with the evaluation's cached judge: label
accuracy, and the judge-feature diversity ratio whose minimum is the ``mode_collapse`` test. A quick
proxy for ``cgan-train evaluate`` (no FID, no probe trainings). Prints a table and the final energies.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import cgan_contract as contract  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.data import load_dataset  # noqa: E402
from trainer.evaluation import COLLAPSE_THRESHOLD, diversity, label_accuracy  # noqa: E402
from trainer.evaluation.judge import load_or_train_judge  # noqa: E402
from trainer.train import train  # noqa: E402
from trainer.variants.ebgan import CONDITIONS  # noqa: E402


def score(generator, judge, dataset, per_class: int) -> tuple[float, float]:
    """(label accuracy, minimum per-class diversity ratio) of ``per_class`` images of every class."""
    labels = np.repeat(np.arange(dataset.num_classes), per_class)
    z = contract.noise_for_seeds(contract.request_seeds(0, len(labels)), generator.inputs[0].shape[-1])
    images = contract.to_uint8(np.asarray(generator([z, labels.astype(np.int32)], training=False)))
    predicted, features = judge.predict(images)
    _, real_features = judge.predict(dataset.test.images)
    ratios = diversity(features, labels, real_features, dataset.test.labels, dataset.num_classes)
    return label_accuracy(predicted, labels), float(np.nanmin(ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("dense", "conv"), default="dense")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--margin", type=float, help="override the recipe's margin")
    parser.add_argument("--code-dim", type=int, help="override the recipe's ae_code_dim")
    parser.add_argument("--mismatch-weight", type=float, help="override the recipe's mismatch_weight")
    parser.add_argument("--work-dir", type=Path, help="keep the runs (sample grids, history) here")
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    args = parser.parse_args()

    dataset = load_dataset("mnist-5k")
    judge = load_or_train_judge(dataset)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work_dir or Path(scratch)
        for condition in args.conditions:
            config = TrainConfig.for_dataset(
                "mnist-5k",
                variant="ebgan",
                arch=args.arch,
                steps=args.steps,
                batch_size=args.batch_size,
                work_dir=work,
                name=f"ebgan-{condition}",
                export=False,
                progress=False,
            )
            recipe = dataclasses.replace(config.recipe, ae_condition=condition)
            if args.margin is not None:
                recipe = dataclasses.replace(recipe, margin=args.margin)
            if args.mismatch_weight is not None:
                recipe = dataclasses.replace(recipe, mismatch_weight=args.mismatch_weight)
            if args.code_dim is not None:
                recipe = dataclasses.replace(recipe, ae_code_dim=args.code_dim)
            began = time.perf_counter()
            result = train(dataclasses.replace(config, recipe=recipe))
            seconds = time.perf_counter() - began
            accuracy, div = score(result.gan.export_generator, judge, dataset, args.per_class)
            last = result.history[-1]
            rows.append((condition, accuracy, div, last["real_energy"], last["fake_energy"], seconds))

    print(
        f"\nebgan {args.arch}, mnist-5k, {args.steps} x {args.batch_size}, margin "
        f"{recipe.margin}, code {recipe.ae_code_dim}, mismatch weight {recipe.mismatch_weight}, "
        f"{args.per_class} per class, judge test accuracy {judge.test_accuracy:.3f}\n"
    )
    print("| ae_condition | label acc | min diversity | collapse | E(real) | E(fake) | train s |")
    print("|---|---|---|---|---|---|---|")
    for condition, accuracy, div, e_real, e_fake, seconds in rows:
        collapse = "yes" if div < COLLAPSE_THRESHOLD else "no"
        print(
            f"| {condition} | {accuracy:.1%} | {div:.2f} | {collapse} | {e_real:.3f} | {e_fake:.3f} "
            f"| {seconds:.0f} |"
        )


if __name__ == "__main__":
    main()
