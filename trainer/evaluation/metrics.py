"""Evaluation metrics as pure functions on arrays, so each can be checked on known cases without a GAN.

Fréchet distance (FID's formula, on whatever features it is given), label accuracy overall and per class,
within-class diversity as a ratio to real data, and the class-matched subsets the comparisons use.
"""

from __future__ import annotations

from collections.abc import Sequence

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
