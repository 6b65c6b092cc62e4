"""Worth in real images: the learning-curve bookkeeping on made-up accuracies, with the probe injected."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.evaluation.judge import PROBE_CONFIG
from trainer.evaluation.worth import (
    equivalent_real,
    fraction_counts,
    monotone,
    render_worth,
    worth_in_real_images,
    write_worth_figure,
)


def test_monotone_repair_pools_adjacent_violators():
    np.testing.assert_allclose(monotone([0.5, 0.7, 0.9]), [0.5, 0.7, 0.9])  # already non-decreasing
    np.testing.assert_allclose(monotone([0.5, 0.8, 0.7, 0.9]), [0.5, 0.75, 0.75, 0.9])
    np.testing.assert_allclose(monotone([0.9, 0.6, 0.6]), [0.7, 0.7, 0.7])
    # The repair keeps the mean (least squares under the order constraint).
    values = np.random.default_rng(0).random(9)
    assert monotone(values).mean() == pytest.approx(values.mean())
    assert np.all(np.diff(monotone(values)) >= 0)


def test_equivalent_real_interpolates_the_curve_linearly_in_images():
    sizes, acc = [100, 200, 400], [0.80, 0.90, 0.94]
    assert equivalent_real(0.85, sizes, acc) == (pytest.approx(150.0), None)
    assert equivalent_real(0.92, sizes, acc) == (pytest.approx(300.0), None)
    assert equivalent_real(0.90, sizes, acc) == (pytest.approx(200.0), None)
    assert equivalent_real(0.94, sizes, acc) == (pytest.approx(400.0), None)
    # Beyond the curve: more than all the real images, or fewer than its smallest point.
    assert equivalent_real(0.95, sizes, acc) == (400, "above")
    assert equivalent_real(0.70, sizes, acc) == (100, "below")


def test_equivalent_real_reads_a_repaired_curve_at_its_first_size_reaching_the_accuracy():
    # A dip (0.88 after 0.90) is pooled to 0.89, 0.89: a flat stretch, where the first size counts.
    sizes, acc = [100, 200, 300, 400], [0.80, 0.90, 0.88, 0.95]
    assert equivalent_real(0.89, sizes, acc) == (pytest.approx(200.0), None)
    assert equivalent_real(0.85, sizes, acc) == (pytest.approx(100 + 100 * 0.05 / 0.09), None)


def test_fraction_counts_are_stratified():
    labels = np.repeat([0, 1, 2], [40, 20, 5])
    np.testing.assert_array_equal(fraction_counts(labels, 0.5, 3), [20, 10, 2])
    np.testing.assert_array_equal(fraction_counts(labels, 0.1, 3), [4, 2, 1])  # at least one of each class
    np.testing.assert_array_equal(fraction_counts(labels, 1.0, 3), [40, 20, 5])


def _fake_data(per_class: int, classes: int = 3):
    labels = np.repeat(np.arange(classes), per_class)
    # Real images hold 1 at pixel 0, generated ones 2: the fake probe can tell what it was given.
    real = np.zeros((len(labels), 2, 2), np.uint8)
    real[:, 0, 0] = 1
    real[:, 0, 1] = np.arange(len(labels))
    return real, labels


def test_worth_trains_the_curve_and_each_synthetic_size_and_reads_them_off():
    real, real_labels = _fake_data(20)
    pool_labels = np.repeat(np.arange(3), 200)
    pool = np.full((len(pool_labels), 2, 2), 2, np.uint8)
    calls = []

    def probe(images, labels, config, run):
        real_n = int((images[:, 0, 0] == 1).sum())
        synth_n = int((images[:, 0, 0] == 2).sum())
        assert real_n == 0 or synth_n == 0  # the curve is real alone, GAN-train generated alone
        calls.append((real_n, synth_n, run, config, tuple(np.bincount(labels, minlength=3))))
        # Real images teach 0.5 + n/120 (up to 1.0 at 60); generated ones a third as much.
        return 0.5 + (real_n + synth_n / 3) / 120 + 0.001 * run

    worth = worth_in_real_images(
        real, real_labels, pool, pool_labels, 3, probe, PROBE_CONFIG,
        multiples=(1.0, 2.0, 5.0), fractions=(0.25, 0.5, 1.0), runs=2,
    )  # fmt: skip
    assert worth.real_samples == 60
    assert [(p.fraction, p.samples) for p in worth.curve] == [(0.25, 15), (0.5, 30), (1.0, 60)]
    assert [(s.multiple, s.samples) for s in worth.synthetic] == [(1.0, 60), (2.0, 120), (5.0, 300)]
    for point in (*worth.curve, *worth.synthetic):
        assert len(point.runs) == 2 and point.accuracy == pytest.approx(np.mean(point.runs))
    # 60 generated teach what 20 real do, 120 what 40 do: inside the curve (15 to 60 real).
    one, two, five = worth.synthetic
    assert (one.equivalent_real, one.outside) == (pytest.approx(20.0), None)
    assert (two.equivalent_real, two.outside) == (pytest.approx(40.0), None)
    assert (five.equivalent_real, five.outside) == (60, "above")  # 100 real's worth: beyond all 60
    # Every class in proportion, and each run's subsets are its own seeded choice.
    assert all(counts == (5, 5, 5) for real_n, _, _, _, counts in calls if real_n == 15)
    # Every training gets (within an epoch's rounding) the same optimizer steps: the full real split's
    # usual budget (10 epochs of 60 images: 10 steps), or one pass over the largest set if that is more.
    for point in (*worth.curve, *worth.synthetic):
        assert 10 <= point.steps < 10 + -(-point.samples // PROBE_CONFIG.batch_size), point
    assert len(calls) == 2 * (3 + 3)


def test_worth_subsets_are_nested_and_seeded_per_run():
    real, real_labels = _fake_data(10)
    pool_labels = np.repeat(np.arange(3), 10)
    pool = np.full((30, 2, 2), 2, np.uint8)
    seen = {}

    def probe(images, labels, config, run):
        ids = images[:, 0, 1][images[:, 0, 0] == 1]
        if len(ids):
            seen[(len(ids), run)] = set(ids.tolist())
        return 0.9

    worth_in_real_images(real, real_labels, pool, pool_labels, 3, probe, PROBE_CONFIG, (1.0,), (0.3, 0.6), 2)
    assert seen[(9, 0)] < seen[(18, 0)] and seen[(9, 1)] < seen[(18, 1)]
    assert seen[(9, 0)] != seen[(9, 1)]


def test_worth_report_and_figure(tmp_path):
    real, real_labels = _fake_data(20)
    pool_labels = np.repeat(np.arange(3), 100)
    pool = np.full((300, 2, 2), 2, np.uint8)
    probe = lambda images, labels, config, run: 0.5 + len(labels) / 1000  # noqa: E731
    worth = worth_in_real_images(
        real, real_labels, pool, pool_labels, 3, probe, PROBE_CONFIG, (1.0, 5.0), (0.5, 1.0), 3
    )
    text = render_worth(worth)
    assert "## Worth in real images" in text
    assert "| 1x | 60 |" in text and "> all 60 real" in text
    path = tmp_path / "worth.png"
    write_worth_figure(worth, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
