"""KID (unbiased MMD^2, cubic polynomial kernel) against its definition, and its unbiasedness."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.evaluation.kid import kid, kid_replicates, polynomial_kernel


def _kid_by_definition(x: np.ndarray, y: np.ndarray) -> float:
    """Binkowski et al. 2018, eq. 3, as double loops: mean of k over distinct pairs within each set, minus
    twice the mean over all cross pairs, with k(a, b) = (a.b / d + 1)^3."""
    d = x.shape[1]
    k = lambda a, b: (float(a @ b) / d + 1.0) ** 3  # noqa: E731
    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def test_polynomial_kernel_is_the_cubic_one():
    a, b = np.array([[1.0, 2.0]]), np.array([[3.0, -1.0], [0.0, 0.0]])
    np.testing.assert_allclose(polynomial_kernel(a, b), [[(1 / 2 + 1) ** 3, 1.0]])


@pytest.mark.parametrize(("n", "m"), [(7, 7), (9, 5)])
def test_kid_matches_the_double_loop(n, m):
    rng = np.random.default_rng(n + m)
    x, y = rng.normal(size=(n, 4)), rng.normal(0.5, 1.3, size=(m, 4))
    assert kid(x, y) == pytest.approx(_kid_by_definition(x, y), rel=1e-10)
    # Bands of a few rows give the same sums as one block.
    assert kid(x, y, chunk_bytes=64) == pytest.approx(kid(x, y), rel=1e-12)


def test_a_replicate_counts_repeated_rows_but_never_pairs_a_row_with_itself():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 3)), rng.normal(1.0, 1.0, size=(5, 3))
    cx = np.array([2, 0, 1, 3, 0, 0])
    cy = np.array([0, 1, 1, 2, 1])
    # The resample as rows: pairs of copies of one row are left out, as the i == j terms are.
    xs, ys = np.repeat(x, cx, axis=0), np.repeat(y, cy, axis=0)
    origin_x, origin_y = np.repeat(np.arange(6), cx), np.repeat(np.arange(5), cy)
    d = 3
    k = lambda a, b: (float(a @ b) / d + 1.0) ** 3  # noqa: E731

    def within(rows, origin):
        pairs = [(i, j) for i in range(len(rows)) for j in range(len(rows)) if origin[i] != origin[j]]
        return sum(k(rows[i], rows[j]) for i, j in pairs) / len(pairs)

    cross = sum(k(a, b) for a in xs for b in ys) / (len(xs) * len(ys))
    expected = within(xs, origin_x) + within(ys, origin_y) - 2 * cross
    counts_x = np.stack([np.ones(6), cx], axis=1)
    counts_y = np.stack([np.ones(5), cy], axis=1)
    values = kid_replicates(x, y, counts_x, counts_y)
    assert values[0] == pytest.approx(kid(x, y), rel=1e-12)
    assert values[1] == pytest.approx(expected, rel=1e-10)


def test_kid_is_unbiased_near_zero_for_one_distribution_and_can_be_negative():
    rng = np.random.default_rng(0)
    same = [kid(rng.normal(size=(60, 8)), rng.normal(size=(60, 8))) for _ in range(200)]
    shifted = kid(rng.normal(size=(60, 8)), rng.normal(0.5, 1.0, size=(60, 8)))
    # The mean over draws is near 0 within its standard error, single draws fall on both sides of it...
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same))
    assert min(same) < 0 < max(same)
    # ...and a real difference stands far above that spread.
    assert shifted > 10 * np.std(same)


def test_kid_rejects_bad_shapes():
    with pytest.raises(ValueError, match="equal D"):
        kid(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="at least 2"):
        kid(np.zeros((1, 3)), np.zeros((4, 3)))
