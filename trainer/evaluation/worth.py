"""Worth in real images: how many real training images a set of generated ones is worth to a classifier.

The probe (the GAN-train CNN) is trained on generated sets ``m`` times the real training split's size (per
class, the real class mix), and on stratified fractions of the real split (the real learning curve), each
``runs`` times with seeds ``seed + run``, all tested on the real test split. A generated set's worth is the
number of real images at which the learning curve reaches its mean accuracy:

* the curve is the real points' mean accuracies made non-decreasing (:func:`monotone`: pool adjacent
  violators, the least-squares monotone fit; a dip between seeds' noise is averaged out, not skipped),
  then read piecewise linearly in the number of images, at the first size that reaches the accuracy;
* above the curve's top the worth is "> all N real", below its first point "< its size".

Every training runs for the same optimizer steps (up to the rounding to whole epochs): the steps the probe
takes on the whole real split (its usual fixed epochs), or one pass over the largest set when that is more.
With the probe's fixed epochs alone a 10% subset would train a tenth as long and a 10x generated set ten
times as long, and the curve would measure training length as much as data.

Within a run the real subsets are nested (each fraction a prefix of a seeded per-class shuffle), and the
generated sets too (a smaller multiple's images are the first ones of a larger's), so points differ only
by what is added. The training itself is injected (``probe(images, labels, config, run) -> accuracy``), as
in :mod:`.augmentation`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cgan_contract.card import RealCurvePoint, SyntheticWorth, Worth
from trainer.evaluation.augmentation import Probe, probe_steps, synthetic_counts
from trainer.evaluation.judge import CNNConfig
from trainer.evaluation.scores import take_per_class
from trainer.files import atomic_path

#: Generated set sizes, as multiples of the real training split (the issue's 1x, 2x, 5x, 10x).
WORTH_MULTIPLES = (1.0, 2.0, 5.0, 10.0)
#: Fractions of the real training split on the learning curve.
WORTH_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
WORTH_FIGURE = "worth.png"


def monotone(values: Sequence[float]) -> np.ndarray:
    """The non-decreasing sequence nearest to ``values`` in least squares (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, size]
    for v in np.asarray(values, np.float64):
        blocks.append([v, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m2, n2), (m1, n1) = blocks.pop(), blocks.pop()
            blocks.append([(m1 * n1 + m2 * n2) / (n1 + n2), n1 + n2])
    return np.concatenate([np.full(int(n), m) for m, n in blocks])


def equivalent_real(
    accuracy: float, sizes: Sequence[float], accuracies: Sequence[float]
) -> tuple[float, str | None]:
    """Real images at which the curve ``(sizes, accuracies)`` (increasing sizes; repaired with
    :func:`monotone` here) first reaches ``accuracy``: ``(images, None)``, or ``(last size, "above")`` /
    ``(first size, "below")`` outside it."""
    sizes, curve = np.asarray(sizes, np.float64), monotone(accuracies)
    if accuracy > curve[-1]:
        return sizes[-1].item(), "above"
    if accuracy < curve[0]:
        return sizes[0].item(), "below"
    i = int(np.argmax(curve >= accuracy))
    if i == 0:
        return sizes[0].item(), None
    share = (accuracy - curve[i - 1]) / (curve[i] - curve[i - 1])
    return float(sizes[i - 1] + share * (sizes[i] - sizes[i - 1])), None


def fraction_counts(real_labels: np.ndarray, fraction: float, num_classes: int) -> np.ndarray:
    """Images per class of a ``fraction`` of the real split: ``round(fraction * count)``, at least one of
    each class the split has."""
    real = np.bincount(np.asarray(real_labels), minlength=num_classes)[:num_classes]
    return np.where(real > 0, np.maximum(np.rint(fraction * real), 1), 0).astype(np.int64)


def worth_in_real_images(
    real_images: np.ndarray,
    real_labels: np.ndarray,
    pool_images: np.ndarray,
    pool_labels: np.ndarray,
    num_classes: int,
    probe: Probe,
    config: CNNConfig,
    multiples: Sequence[float] = WORTH_MULTIPLES,
    fractions: Sequence[float] = WORTH_FRACTIONS,
    runs: int = 3,
    seed: int = 0,
) -> Worth:
    """The real learning curve over ``fractions`` and GAN-train at each of ``multiples``, with each
    multiple's worth in real images. ``pool_*`` must hold enough generated images of each class for the
    largest multiple (the first ones of each class are used)."""
    real_labels, pool_labels = np.asarray(real_labels), np.asarray(pool_labels)
    fractions, multiples = sorted(fractions), sorted(multiples)
    largest = int(synthetic_counts(real_labels, max(multiples), num_classes).sum())
    budget = max(probe_steps(config, len(real_labels)), math.ceil(max(largest, 1) / config.batch_size))
    # At least `budget` steps for every set, in whole epochs: one epoch at least, more where it is short.
    equal = dataclasses.replace(config, epochs=1, min_steps=budget)

    curve = []
    for fraction in fractions:
        counts = fraction_counts(real_labels, fraction, num_classes)
        accuracies = []
        for run in range(runs):
            # The same shuffle for every fraction of a run: its subsets are nested.
            picked = take_per_class(real_labels, counts, np.random.default_rng(seed + run))
            accuracies.append(probe(real_images[picked], real_labels[picked], equal, run))
        curve.append(_point(RealCurvePoint, accuracies, int(counts.sum()), equal, fraction=fraction))

    sizes = [p.samples for p in curve]
    means = [p.accuracy for p in curve]
    synthetic = []
    for multiple in multiples:
        picked = take_per_class(pool_labels, synthetic_counts(real_labels, multiple, num_classes))
        images, labels = pool_images[picked], pool_labels[picked]
        accuracies = [probe(images, labels, equal, run) for run in range(runs)]
        value, outside = equivalent_real(float(np.mean(accuracies)), sizes, means)
        synthetic.append(
            _point(
                SyntheticWorth,
                accuracies,
                len(picked),
                equal,
                multiple=multiple,
                equivalent_real=value,
                outside=outside,
            )  # fmt: skip
        )
    return Worth(real_samples=len(real_labels), curve=curve, synthetic=synthetic)


def _point(kind, accuracies: list[float], samples: int, config: CNNConfig, **fields):
    return kind(
        samples=samples,
        accuracy=float(np.mean(accuracies)),
        runs=[float(a) for a in accuracies],
        steps=probe_steps(config, samples),
        **fields,
    )


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _runs(runs: list[float]) -> str:
    if len(runs) < 2:
        return ""
    return f" ± {100 * float(np.std(runs)):.1f} ({100 * min(runs):.1f}-{100 * max(runs):.1f})"


def _worth_cell(point: SyntheticWorth, real_samples: int) -> str:
    if point.outside == "above":
        return f"> all {real_samples} real"
    if point.outside == "below":
        return f"< {point.equivalent_real:.0f} real"
    return f"{point.equivalent_real:.0f} real ({point.equivalent_real / real_samples:.0%} of the split)"


def render_worth(worth: Worth) -> str:
    """The ``quality.md`` section: what each generated set is worth, and the real curve it is read off."""
    runs = len(worth.curve[0].runs) if worth.curve else 0
    lines = [
        "",
        "## Worth in real images",
        "",
        "The probe CNN trained on generated sets of 1x, 2x, ... the real training split "
        f"({worth.real_samples} images, per class), and on stratified fractions of that split "
        f"(the learning curve), mean ± std (min-max) of {runs} seeds, all tested on the real "
        "test split and trained for the same steps. A generated set is worth the real images "
        "at which the curve (made non-decreasing, linear between points) reaches its accuracy."
        + (f" Took {worth.seconds:.0f} s." if worth.seconds else ""),
        "",
        "| generated set | images | accuracy | worth |",
        "|---|---|---|---|",
    ]
    for s in worth.synthetic:
        lines.append(
            f"| {s.multiple:g}x | {s.samples} | {_pct(s.accuracy)}{_runs(s.runs)} | "
            f"{_worth_cell(s, worth.real_samples)} |"
        )
    lines += ["", "| real fraction | images | accuracy | steps |", "|---|---|---|---|"]
    for p in worth.curve:
        lines.append(f"| {p.fraction:.0%} | {p.samples} | {_pct(p.accuracy)}{_runs(p.runs)} | {p.steps} |")
    return "\n".join(lines) + "\n"


def write_worth_figure(worth: Worth, path: Path) -> None:
    """The learning curve (seeds' range as bars, the monotone curve read) and each generated set's
    accuracy as a horizontal line, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = np.array([p.samples for p in worth.curve])
    means = np.array([p.accuracy for p in worth.curve])
    lows = means - np.array([min(p.runs) for p in worth.curve])
    highs = np.array([max(p.runs) for p in worth.curve]) - means
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.errorbar(sizes, means, yerr=[lows, highs], fmt="o", color="black", label="real (seeds' range)")
    ax.plot(sizes, monotone(means), color="black", linewidth=1, label="curve read")
    for k, s in enumerate(worth.synthetic):
        ax.axhline(s.accuracy, color=f"C{k}", linestyle="--", linewidth=1, label=f"{s.multiple:g}x generated")
        if s.outside is None:
            ax.plot([s.equivalent_real], [s.accuracy], "x", color=f"C{k}")
    ax.set_xlabel("real training images")
    ax.set_ylabel("probe accuracy on real test")
    ax.set_title("Worth of generated images in real images")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(Path(path), suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
