"""Bootstrap intervals, probe-seed spreads and the "clears" rule on statistics with known distributions."""

from __future__ import annotations

import numpy as np
import pytest

from cgan_contract.card import Interval
from trainer.evaluation.intervals import (
    bootstrap,
    clears,
    distance_figures,
    seed_interval,
    spread,
    stratified_counts,
)
from trainer.evaluation.kid import kid
from trainer.evaluation.scores import frechet_distance


def test_bootstrap_of_a_normal_mean_covers_it_with_the_textbook_width():
    sigma, n, true_mean = 2.0, 400, 3.0
    covered = 0
    for trial in range(20):
        x = np.random.default_rng(trial).normal(true_mean, sigma, n)
        point, interval = bootstrap(lambda idx, x=x: float(x[idx].mean()), n, resamples=400, seed=trial)
        assert point == pytest.approx(x.mean())
        # Width of a 95% interval of a mean: 2 * 1.96 * sigma / sqrt(n), within 25%.
        assert interval.high - interval.low == pytest.approx(2 * 1.96 * sigma / np.sqrt(n), rel=0.25)
        covered += interval.low <= true_mean <= interval.high
    # 95% coverage expects 19 of 20; 16 or fewer happens by chance in under 2% of such runs.
    assert covered >= 17


def test_bootstrap_is_seeded():
    x = np.random.default_rng(0).normal(size=50)
    stat = lambda idx: float(x[idx].mean())  # noqa: E731
    assert bootstrap(stat, 50, 100, seed=1) == bootstrap(stat, 50, 100, seed=1)
    assert bootstrap(stat, 50, 100, seed=1) != bootstrap(stat, 50, 100, seed=2)


def test_stratified_counts_resample_within_each_class():
    labels = np.array([0, 0, 0, 1, 1, 2])
    counts = stratified_counts(labels, 500, np.random.default_rng(0))
    assert counts.shape == (6, 501)
    np.testing.assert_array_equal(counts[:, 0], 1)  # column 0: the sample itself
    for c, size in enumerate([3, 2, 1]):
        np.testing.assert_array_equal(counts[labels == c].sum(axis=0), size)
    assert counts[labels == 0, 1:].max() > 1  # with replacement


def test_distance_figures_point_values_are_the_plain_scores_and_intervals_contain_them():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 40)
    test = rng.normal(size=(80, 5)) + labels[:, None]
    real = rng.normal(size=(80, 5)) + labels[:, None]
    gen = rng.normal(0.4, 1.2, size=(80, 5)) + labels[:, None]
    figures, intervals = distance_figures(gen, labels, real, labels, test, labels, resamples=100, seed=0)
    assert figures["fid"] == pytest.approx(frechet_distance(gen, test))
    assert figures["fid_floor"] == pytest.approx(frechet_distance(real, test))
    assert figures["fid_ratio"] == pytest.approx(figures["fid"] / figures["fid_floor"])
    assert figures["kid"] == pytest.approx(kid(gen, test))
    assert figures["kid_floor"] == pytest.approx(kid(real, test))
    for name in ("fid", "fid_floor", "kid"):
        assert intervals[name].low <= figures[name] <= intervals[name].high, name
    # A generator off the real distribution clears the floor: its interval lies above the floor's.
    assert clears(intervals["fid"], intervals["fid_floor"])
    assert clears(intervals["kid"], intervals["kid_floor"])
    # Without KID only the Fréchet figures are computed.
    fid_only, _ = distance_figures(gen, labels, real, labels, test, labels, 10, 0, with_kid=False)
    assert set(fid_only) == {"fid", "fid_floor", "fid_ratio"}


def test_kid_ratio_is_left_out_when_the_floor_is_not_above_zero():
    rng = np.random.default_rng(1)
    labels = np.zeros(30, dtype=np.int64)
    test, real = rng.normal(size=(30, 3)), rng.normal(size=(30, 3))
    gen = rng.normal(2.0, 1.0, size=(30, 3))
    figures, intervals = distance_figures(gen, labels, real, labels, test, labels, 100, 0)
    # Real vs real: KID 0 in expectation, so resamples of the floor fall on both sides of 0 and a ratio to
    # it means nothing.
    assert intervals["kid_floor"].low < 0
    assert intervals["kid_ratio"] is None
    if figures["kid_floor"] <= 0:
        assert figures["kid_ratio"] is None


def test_spread_and_seed_interval_of_probe_runs():
    s = spread([0.90, 0.92, 0.94])
    assert (s.mean, s.low, s.high) == pytest.approx((0.92, 0.90, 0.94))
    assert s.std == pytest.approx(np.std([0.90, 0.92, 0.94]))
    # Student t with 2 degrees of freedom: 4.303 standard errors each side.
    interval = seed_interval([0.90, 0.92, 0.94])
    assert interval.high - 0.92 == pytest.approx(4.303 * 0.02 / np.sqrt(3), rel=1e-3)
    assert seed_interval([0.9]) is None


def test_clears_needs_the_whole_interval_above_the_other():
    assert clears(Interval(low=0.95, high=0.97), Interval(low=0.90, high=0.94))
    assert not clears(Interval(low=0.93, high=0.97), Interval(low=0.90, high=0.94))
    # Probe runs count by their seed interval: three close seeds clear; one mean, widely spread, does not.
    assert clears([0.960, 0.961, 0.962], [0.950, 0.951, 0.952])
    assert not clears([0.93, 0.96, 0.99], [0.950, 0.951, 0.952])
    with pytest.raises(ValueError, match="interval"):
        clears([0.96], [0.95])
