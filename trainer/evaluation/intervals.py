"""How sure a figure is: bootstrap intervals of the distance scores, the spread of probe seeds, and the rule
for saying one figure beats another.

* :func:`bootstrap`: percentile bootstrap of any statistic of row indices (seeded).
* :func:`distance_figures`: FID and KID of a generated set and of the real floor against one real test set,
  with intervals from :data:`BOOTSTRAP_RESAMPLES` stratified resamples (rows redrawn with replacement within
  each class, so every resample keeps the class mix). The judge features are computed once, so a resample
  costs only the statistics: the test rows are redrawn once per resample and shared by score and floor, so
  a ratio's interval is paired and carries their correlation.
* :func:`spread` and :func:`seed_interval`: the probe accuracies (GAN-train, real-train, augmentation arms)
  are means of a few seeds; their std and min-max, and a Student-t interval of the mean.
* :func:`clears`: ``a`` clears ``b`` when its whole interval lies above ``b``'s, the bar for a claim in
  QUALITY.md that one figure is higher than another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from cgan_contract.card import Interval
from trainer.evaluation.kid import kid_replicates

LEVEL = 0.95
#: Resamples of a bootstrap interval: percentile intervals at 95% settle to a few percent of their width.
BOOTSTRAP_RESAMPLES = 200
#: Student t quantiles at 0.975 by degrees of freedom; between entries the smaller df's (wider) value.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000, 120: 1.980}  # fmt: skip


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> Interval:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(np.asarray(values, np.float64), [tail, 100 - tail])
    return Interval(low=float(low), high=float(high))


def bootstrap(
    statistic: Callable[[np.ndarray], float],
    n: int,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> tuple[float, Interval]:
    """``statistic`` of all ``n`` rows, and its percentile interval over ``resamples`` draws of ``n`` row
    indices with replacement."""
    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, n, n)) for _ in range(resamples)]
    return statistic(np.arange(n)), percentile_interval(values, level)


def stratified_counts(labels: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``[N, 1 + resamples]`` draw counts of each row: column 0 all ones (the sample itself), then one
    column per resample, each redrawing every class's rows with replacement (class sizes kept)."""
    labels = np.asarray(labels)
    counts = np.zeros((len(labels), 1 + resamples))
    counts[:, 0] = 1
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        for r in range(1, 1 + resamples):
            counts[members, r] = np.bincount(
                rng.integers(0, len(members), len(members)), minlength=len(members)
            )
    return counts


#: Second moments of all resamples are summed a band of rows at a time, each band's outer products at most
#: this many bytes (float64).
MOMENT_CHUNK_BYTES = 64 << 20


def _moments(x: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[R, D]`` and covariance ``[R, D, D]`` of each resample (column of counts), as ``np.cov`` of
    its repeated rows. One matrix product over all resamples instead of one per resample."""
    n, d = x.shape
    sizes = counts.sum(axis=0)
    means = counts.T @ x / sizes[:, None]
    # Covariance is shift-invariant: centring on the whole set's mean keeps the subtraction below exact.
    centre = x.mean(axis=0)
    x = x - centre
    second = np.zeros((counts.shape[1], d * d))
    step = max(1, MOMENT_CHUNK_BYTES // (8 * d * d))
    for start in range(0, n, step):
        band = slice(start, start + step)
        second += counts[band].T @ np.einsum("ni,nj->nij", x[band], x[band]).reshape(-1, d * d)
    offsets = means - centre
    second = second.reshape(-1, d, d) - sizes[:, None, None] * np.einsum("ri,rj->rij", offsets, offsets)
    return means, second / (sizes - 1)[:, None, None]


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def _frechet_replicates(
    sides: list[tuple[np.ndarray, np.ndarray]], test: tuple[np.ndarray, np.ndarray]
) -> list[np.ndarray]:
    """Fréchet distance of each side's resamples to the test set's (``scores.frechet_distance_from_stats``
    with the test covariance's root computed once per resample and shared by the sides)."""
    out = [np.empty(len(test[0])) for _ in sides]
    for r, (mu_t, cov_t) in enumerate(zip(*test, strict=True)):
        root = _psd_sqrt(cov_t)
        for k, (mu, cov) in enumerate(sides):
            middle = root @ cov[r] @ root
            tr_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)))
            diff = mu[r] - mu_t
            out[k][r] = max(0.0, diff @ diff + np.trace(cov[r]) + np.trace(cov_t) - 2.0 * tr_sqrt)
    return out


def _ratio(score: np.ndarray, floor: np.ndarray) -> np.ndarray | None:
    """Per-resample ratios; ``None`` when some floor is not above 0 (a ratio to it means nothing)."""
    return score / floor if np.all(floor > 0) else None


def distance_figures(
    gen: np.ndarray,
    gen_labels: np.ndarray,
    real: np.ndarray,
    real_labels: np.ndarray,
    test: np.ndarray,
    test_labels: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    with_kid: bool = True,
    level: float = LEVEL,
) -> tuple[dict[str, float | None], dict[str, Interval | None]]:
    """FID of ``gen`` and of the floor ``real`` against ``test`` (judge features ``[N, D]``), their ratio,
    and with ``with_kid`` the same for KID: ``(figures, intervals)`` keyed ``fid``, ``fid_floor``,
    ``fid_ratio``, ``kid``, ``kid_floor``, ``kid_ratio``. A ratio is ``None`` when its floor is not above 0
    (KID's can be: real vs real is 0 in expectation), its interval when that happens in any resample; with
    ``resamples=0`` every interval is ``None``."""
    rng = np.random.default_rng(seed)
    counts = {
        name: stratified_counts(labels, resamples, rng)
        for name, labels in (("gen", gen_labels), ("real", real_labels), ("test", test_labels))
    }
    x = {
        "gen": np.asarray(gen, np.float64),
        "real": np.asarray(real, np.float64),
        "test": np.asarray(test, np.float64),
    }
    moments = {name: _moments(x[name], counts[name]) for name in x}
    values = {}
    values["fid"], values["fid_floor"] = _frechet_replicates(
        [moments["gen"], moments["real"]], moments["test"]
    )
    for name in ("fid", "fid_floor"):
        # FID's finite-sample bias grows when a resample repeats rows (fewer distinct ones), so its
        # replicates run high, above the estimate itself at small sizes: shift them by that excess (the
        # bootstrap's bias estimate) before taking percentiles.
        if resamples:
            values[name][1:] -= values[name][1:].mean() - values[name][0]
    values["fid_ratio"] = values["fid"] / np.maximum(values["fid_floor"], 1e-12)
    if with_kid:
        for side, name in (("gen", "kid"), ("real", "kid_floor")):
            values[name] = kid_replicates(x[side], x["test"], counts[side], counts["test"])
            # KID's replicates drift too, though the estimate is unbiased on distinct rows: a resample that
            # drops a row's twin pairs loses its closest within-set pairs. On the bundled model's judge
            # features the uncorrected interval missed its own estimate ([-0.72, -0.29] around -0.24), so
            # they get the same bias shift as FID's.
            if resamples:
                values[name][1:] -= values[name][1:].mean() - values[name][0]
        values["kid_ratio"] = _ratio(values["kid"], values["kid_floor"])
        if values["kid_ratio"] is None and values["kid_floor"][0] > 0:
            point = np.full(1 + resamples, np.nan)
            point[0] = values["kid"][0] / values["kid_floor"][0]
            values["kid_ratio"] = point
    figures = {name: None if v is None else float(v[0]) for name, v in values.items()}
    intervals = {
        name: None
        if v is None or resamples == 0 or np.isnan(v[1:]).any()
        else percentile_interval(v[1:], level)
        for name, v in values.items()
    }
    return figures, intervals


class Spread(NamedTuple):
    """Mean, population std and range of a figure's probe seeds."""

    mean: float
    std: float
    low: float
    high: float


def spread(runs: Sequence[float]) -> Spread:
    runs = np.asarray(runs, np.float64)
    return Spread(float(runs.mean()), float(runs.std()), float(runs.min()), float(runs.max()))


def seed_interval(runs: Sequence[float], level: float = LEVEL) -> Interval | None:
    """Student-t interval of the mean of probe seeds (``None`` with fewer than two): with 3 seeds it is
    4.3 standard errors each side, wide on purpose."""
    if level != LEVEL:
        raise ValueError(f"only the {LEVEL:.0%} interval is tabulated")
    runs = np.asarray(runs, np.float64)
    if len(runs) < 2:
        return None
    df = len(runs) - 1
    t = T_975[max(k for k in T_975 if k <= df)] if df < 120 else 1.96
    half = t * runs.std(ddof=1) / np.sqrt(len(runs))
    return Interval(low=float(runs.mean() - half), high=float(runs.mean() + half))


def _as_interval(figure: Interval | Sequence[float]) -> Interval:
    interval = figure if isinstance(figure, Interval) else seed_interval(figure)
    if interval is None:
        raise ValueError("a figure needs an interval (or at least two probe seeds) to clear another")
    return interval


def clears(a: Interval | Sequence[float], b: Interval | Sequence[float]) -> bool:
    """Whether ``a`` is higher than ``b`` beyond doubt: ``a``'s whole interval above ``b``'s. Each is an
    interval or the runs of a probe figure (then its :func:`seed_interval`). For a lower-is-better figure
    (FID, KID), ``clears(floor_or_other, this)`` says this one is lower."""
    return _as_interval(a).low > _as_interval(b).high
