"""Augmentation value: does adding generated images to the real training data raise a classifier?

The probe classifier (the one GAN-train and real-train use) is trained on the real training split alone,
then on the real split plus ``m`` generated images per real image for each multiple ``m`` (per class, so
the class mix stays the real one), each ``runs`` times with seeds ``seed + run``, and tested on the real
test split. The generated images of a smaller multiple are a prefix of a larger one's, so the arms differ
only by what is added.

Every arm trains for the same number of optimizer steps, the largest arm's: the probe otherwise trains a
fixed number of epochs, and a set three times larger would get three times the steps. On mnist-5k that
alone is worth about half a point (real alone: 96.1% at 360 steps, 96.5% at 720, 96.7% at 1,080), as
much as the gain being measured; with equal steps, any difference is the data's.

The training itself is passed in (``probe(images, labels, config, run) -> accuracy``), so the bookkeeping
here is testable without TensorFlow and the caller decides the classifier and the test split.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np

from cgan_contract import AugmentationArm
from trainer.evaluation.judge import CNNConfig
from trainer.evaluation.scores import take_per_class

#: Generated images per real image in the augmented arms (the issue's 1x and 2x).
AUGMENTATION_MULTIPLES = (1.0, 2.0)

Probe = Callable[[np.ndarray, np.ndarray, CNNConfig, int], float]


def synthetic_counts(real_labels: np.ndarray, multiple: float, num_classes: int) -> np.ndarray:
    """Generated images per class for one multiple: ``round(multiple * real count of the class)``."""
    real = np.bincount(np.asarray(real_labels), minlength=num_classes)[:num_classes]
    return np.rint(multiple * real).astype(np.int64)


def probe_steps(config: CNNConfig, n: int) -> int:
    """Optimizer steps of one :func:`~trainer.evaluation.judge.fit_cnn` on ``n`` images (its formula)."""
    used = n if config.max_train is None else min(n, config.max_train)
    return config.epochs_for(used) * math.ceil(used / config.batch_size)


def augmentation_value(
    real_images: np.ndarray,
    real_labels: np.ndarray,
    pool_images: np.ndarray,
    pool_labels: np.ndarray,
    num_classes: int,
    probe: Probe,
    config: CNNConfig,
    multiples: Sequence[float] = AUGMENTATION_MULTIPLES,
    runs: int = 3,
) -> list[AugmentationArm]:
    """The real-alone arm, then one arm per multiple, each trained with ``config`` stretched to the largest
    arm's steps; ``pool_*`` must hold enough generated images of each class for the largest multiple (the
    first ones of each class are used)."""
    real_labels, pool_labels = np.asarray(real_labels), np.asarray(pool_labels)
    largest = len(real_labels) + int(
        synthetic_counts(real_labels, max(multiples, default=0), num_classes).sum()
    )
    equal_steps = dataclasses.replace(config, min_steps=max(config.min_steps, probe_steps(config, largest)))
    arms = []
    for multiple in (0.0, *multiples):
        counts = synthetic_counts(real_labels, multiple, num_classes)
        picked = take_per_class(pool_labels, counts)
        images = np.concatenate([real_images, pool_images[picked]])
        labels = np.concatenate([real_labels, pool_labels[picked]])
        accuracies = [probe(images, labels, equal_steps, run) for run in range(runs)]
        arms.append(
            AugmentationArm(
                synthetic_multiple=multiple,
                real_samples=len(real_labels),
                synthetic_samples=len(picked),
                accuracy=float(np.mean(accuracies)),
                runs=accuracies,
                steps=probe_steps(equal_steps, len(labels)),
            )
        )
    return arms
