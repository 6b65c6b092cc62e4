"""Quality scores as pure functions on arrays, so each can be checked on known cases without a GAN.

Fréchet distance (FID's formula, on whatever features it is given), label accuracy overall and per class,
within-class diversity as a ratio to real data, k-NN precision/recall/density/coverage, and the
class-matched subsets the comparisons use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

#: A class whose generated images are less than half as spread out as real ones is flagged. Healthy
#: generators sit near 1 (GANs typically 0.7-1.0); a collapsed class is near 0.
COLLAPSE_THRESHOLD = 0.5
#: Pairwise distances are O(n^2); the mean over 1,000 images per class is already a precise estimate.
DIVERSITY_MAX_PER_CLASS = 1000


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need at least 2 feature vectors [N, D], got shape {list(features.shape)}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance_from_stats(
    mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray
) -> float:
    """``|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2))`` for Gaussians N(mu1, C1), N(mu2, C2).

    ``tr((C1 C2)^(1/2))`` is computed as ``tr((S C2 S)^(1/2))`` with ``S = C1^(1/2)``: the same eigenvalues,
    but a symmetric PSD matrix, so ``eigh`` suffices and there is no complex round-off to discard.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    root1 = _psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    tr_sqrt = float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None))))
    diff = mu1 - mu2
    return max(0.0, float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``[N, D]`` (FID's formula)."""
    return frechet_distance_from_stats(*gaussian_stats(features_a), *gaussian_stats(features_b))


def label_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    if predicted.shape != labels.shape or len(labels) == 0:
        raise ValueError("predictions and labels must be non-empty and of equal shape")
    return float(np.mean(predicted == labels))


def per_class_accuracy(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float]:
    """Accuracy within each class; NaN for a class with no samples."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    out = []
    for c in range(num_classes):
        mask = labels == c
        out.append(float(np.mean(predicted[mask] == c)) if mask.any() else float("nan"))
    return out


def mean_pairwise_distance(x: np.ndarray) -> float:
    """Mean Euclidean distance over all unordered pairs of rows; NaN with fewer than two rows."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    n = len(x)
    if n < 2:
        return float("nan")
    sq = np.einsum("ij,ij->i", x, x)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0, None)
    upper = np.triu_indices(n, k=1)
    return float(np.mean(np.sqrt(d2[upper])))


def diversity(
    generated: np.ndarray,
    generated_labels: np.ndarray,
    real: np.ndarray,
    real_labels: np.ndarray,
    num_classes: int,
    max_per_class: int = DIVERSITY_MAX_PER_CLASS,
) -> list[float]:
    """Per class: mean pairwise distance among generated samples / the same among real samples.

    Rows may be features or flattened pixels. NaN where a class has fewer than two samples on either side
    or the real samples are all identical (no scale to compare with).
    """
    generated_labels, real_labels = np.asarray(generated_labels), np.asarray(real_labels)
    ratios = []
    for c in range(num_classes):
        gen = mean_pairwise_distance(generated[generated_labels == c][:max_per_class])
        ref = mean_pairwise_distance(real[real_labels == c][:max_per_class])
        ratios.append(gen / ref if ref > 0 else float("nan"))
    return ratios


def mode_collapse(ratios: Sequence[float], threshold: float = COLLAPSE_THRESHOLD) -> bool:
    """True when any class with a defined ratio is less diverse than ``threshold`` times the real data."""
    values = np.asarray(ratios, dtype=np.float64)
    values = values[~np.isnan(values)]
    return bool(values.size and values.min() < threshold)


def matched_counts(train_labels: np.ndarray, samples_per_class: int, num_classes: int) -> np.ndarray:
    """Per-class size of the matched sets: as many as were generated, capped by the real training count."""
    available = np.bincount(np.asarray(train_labels), minlength=num_classes)[:num_classes]
    return np.minimum(available, samples_per_class)


def take_per_class(
    labels: np.ndarray, counts: np.ndarray, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Indices of ``counts[c]`` items of each class c: the first ones, or a random choice given ``rng``."""
    labels = np.asarray(labels)
    picked = []
    for c, k in enumerate(counts):
        members = np.flatnonzero(labels == c)
        if rng is not None:
            members = rng.permutation(members)
        if len(members) < k:
            raise ValueError(f"class {c} has {len(members)} items, {k} requested")
        picked.append(members[:k])
    return np.concatenate(picked) if picked else np.zeros(0, np.int64)


# --- precision, recall, density, coverage (k-NN manifolds) ----------------------------------------------

#: Neighbours that set each sample's ball radius: Naeem et al.'s choice, also used by Kynkäänniemi et al.
PRDC_K = 5
#: Distance blocks are computed a band of rows at a time, each band at most this many bytes (float64):
#: a 60,000 x 60,000 matrix would take 29 GB whole; with a band's temporaries peak memory is a few times this.
PRDC_CHUNK_BYTES = 32 << 20


class PRDCScore(NamedTuple):
    """Each in [0, 1] except density, which is 1 in expectation for matching distributions and unbounded
    above (samples packed where real data is dense)."""

    precision: float
    recall: float
    density: float
    coverage: float


def _squared_distances(a: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    d2 = np.einsum("ij,ij->i", a, a)[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
    return np.clip(d2, 0, None, out=d2)


def _bands(rows: int, cols: int, chunk_bytes: int):
    step = max(1, chunk_bytes // (8 * max(cols, 1)))
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


def knn_radii_squared(x: np.ndarray, k: int = PRDC_K, chunk_bytes: int = PRDC_CHUNK_BYTES) -> np.ndarray:
    """Squared distance from each row to its k-th nearest other row (itself excluded); needs k+1 rows."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) <= k:
        raise ValueError(f"k={k} neighbours need at least {k + 1} rows [N, D], got shape {list(x.shape)}")
    x_sq = np.einsum("ij,ij->i", x, x)
    out = np.empty(len(x))
    for band in _bands(len(x), len(x), chunk_bytes):
        # Position 0 of each sorted row is the row itself at distance 0, so position k is the k-th neighbour.
        out[band] = np.partition(_squared_distances(x[band], x, x_sq), k, axis=1)[:, k]
    return out


def prdc(
    real: np.ndarray, fake: np.ndarray, k: int = PRDC_K, chunk_bytes: int = PRDC_CHUNK_BYTES
) -> PRDCScore:
    """Precision and recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al. 2020) of feature
    sets ``real [N, D]`` and ``fake [M, D]``.

    Each sample's ball reaches its k-th nearest neighbour in its own set; the real balls' union estimates
    the real manifold, the fake balls' the generated one.

    * precision: share of fake samples inside the real manifold (fidelity);
    * recall: share of real samples inside the fake manifold (diversity);
    * density: real balls holding each fake sample, summed, / (k M): rewards samples where real data is
      dense, and unlike precision is not fooled by one real outlier with a huge ball;
    * coverage: share of real samples whose own ball holds some fake sample.

    Balls are open (strict ``<``), as in the authors' reference code: compared with itself a set scores
    precision = recall = coverage = 1 and density 1 (each ball holds its centre and k-1 neighbours; the k-th
    lies on its boundary, where float round-off in the two distance computations can count it in, so a few
    balls in a thousand may count one more). One pass over the N x M distances, a band of fake rows at a
    time.
    """
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        shapes = f"{list(real.shape)} and {list(fake.shape)}"
        raise ValueError(f"need feature sets [N, D] of equal D, got {shapes}")
    real_r2 = knn_radii_squared(real, k, chunk_bytes)
    fake_r2 = knn_radii_squared(fake, k, chunk_bytes)
    real_sq = np.einsum("ij,ij->i", real, real)
    fake_in_real = np.zeros(len(fake), dtype=bool)
    real_balls_per_fake = np.zeros(len(fake), dtype=np.int64)
    real_in_fake = np.zeros(len(real), dtype=bool)
    nearest_fake = np.full(len(real), np.inf)
    for band in _bands(len(fake), len(real), chunk_bytes):
        d2 = _squared_distances(fake[band], real, real_sq)  # [band of fakes, N]
        inside = d2 < real_r2[None, :]
        fake_in_real[band] = inside.any(axis=1)
        real_balls_per_fake[band] = inside.sum(axis=1)
        real_in_fake |= (d2 < fake_r2[band, None]).any(axis=0)
        np.minimum(nearest_fake, d2.min(axis=0), out=nearest_fake)
    return PRDCScore(
        precision=float(fake_in_real.mean()),
        recall=float(real_in_fake.mean()),
        density=float(real_balls_per_fake.sum() / (k * len(fake))),
        coverage=float(np.mean(nearest_fake < real_r2)),
    )


def prdc_per_class(
    real: np.ndarray,
    real_labels: np.ndarray,
    fake: np.ndarray,
    fake_labels: np.ndarray,
    num_classes: int,
    k: int = PRDC_K,
    chunk_bytes: int = PRDC_CHUNK_BYTES,
) -> list[PRDCScore | None]:
    """:func:`prdc` within each class; ``None`` where either side has k or fewer samples of the class."""
    real_labels, fake_labels = np.asarray(real_labels), np.asarray(fake_labels)
    scores: list[PRDCScore | None] = []
    for c in range(num_classes):
        r, f = real[real_labels == c], fake[fake_labels == c]
        scores.append(prdc(r, f, k, chunk_bytes) if min(len(r), len(f)) > k else None)
    return scores
