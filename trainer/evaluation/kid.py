"""KID, the kernel inception distance (Binkowski et al. 2018), on whatever features it is given.

The unbiased estimate of the squared maximum mean discrepancy with the cubic polynomial kernel
``k(a, b) = (a.b / d + 1)^3`` (the kernel of Binkowski et al., torchmetrics and clean-fid):

    KID = mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j)

Unlike FID it has no finite-sample bias: its expectation is the population MMD^2 at any sample size, so
figures measured at different sizes compare, and two draws of one distribution score 0 on average (a
single estimate can be negative). This module computes it on the whole sets, not clean-fid's average over
random subsets: the same expectation, less variance.

:func:`kid_replicates` evaluates it for many bootstrap resamples at once, each given as a count of how often
each row was drawn (the point estimate is the replicate of all ones): every kernel block is computed once
and multiplied into all count vectors, so 200 resamples cost little more than one estimate.
"""

from __future__ import annotations

import numpy as np

#: Kernel blocks are computed a band of rows at a time, each band at most this many bytes (float64).
KID_CHUNK_BYTES = 32 << 20


def polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a b^T / d + 1)^3`` for rows of ``a [N, D]`` and ``b [M, D]``."""
    return (np.asarray(a, np.float64) @ np.asarray(b, np.float64).T / a.shape[1] + 1.0) ** 3


def _check(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need feature sets [N, D] of equal D, got {list(x.shape)} and {list(y.shape)}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"KID needs at least 2 rows on each side, got {len(x)} and {len(y)}")
    return x, y


def _weighted_sums(a: np.ndarray, b: np.ndarray, ca: np.ndarray, cb: np.ndarray, chunk_bytes: int):
    """``ca[:, r]^T K(a, b) cb[:, r]`` for every column r, one band of a's rows at a time."""
    out = np.zeros(ca.shape[1])
    step = max(1, chunk_bytes // (8 * max(len(b), 1)))
    for start in range(0, len(a), step):
        band = slice(start, start + step)
        out += np.einsum("ir,ir->r", polynomial_kernel(a[band], b) @ cb, ca[band])
    return out


def _within(x: np.ndarray, counts: np.ndarray, chunk_bytes: int) -> np.ndarray:
    """Mean kernel over pairs of drawn rows that are copies of two different rows, per column of counts
    (``i != j`` of the definition: a row drawn twice is not paired with itself)."""
    diagonal = (np.einsum("ij,ij->i", x, x) / x.shape[1] + 1.0) ** 3
    same_sum = (counts**2).T @ diagonal
    same_pairs = (counts**2).sum(axis=0)
    n = counts.sum(axis=0)
    pairs = n**2 - same_pairs
    if np.any(pairs <= 0):
        raise ValueError("a resample needs copies of at least 2 different rows")
    return (_weighted_sums(x, x, counts, counts, chunk_bytes) - same_sum) / pairs


def kid_replicates(
    x: np.ndarray,
    y: np.ndarray,
    counts_x: np.ndarray,
    counts_y: np.ndarray,
    chunk_bytes: int = KID_CHUNK_BYTES,
) -> np.ndarray:
    """KID of each resample r that draws row i of ``x`` ``counts_x[i, r]`` times (and so for ``y``):
    ``[R]`` for counts ``[N, R]`` and ``[M, R]``."""
    x, y = _check(x, y)
    cx = np.asarray(counts_x, np.float64).reshape(len(x), -1)
    cy = np.asarray(counts_y, np.float64).reshape(len(y), -1)
    cross = _weighted_sums(x, y, cx, cy, chunk_bytes) / (cx.sum(axis=0) * cy.sum(axis=0))
    return _within(x, cx, chunk_bytes) + _within(y, cy, chunk_bytes) - 2.0 * cross


def kid(x: np.ndarray, y: np.ndarray, chunk_bytes: int = KID_CHUNK_BYTES) -> float:
    """KID between feature sets ``x [N, D]`` and ``y [M, D]`` (N, M >= 2)."""
    x, y = _check(x, y)
    return float(kid_replicates(x, y, np.ones(len(x)), np.ones(len(y)), chunk_bytes)[0])
