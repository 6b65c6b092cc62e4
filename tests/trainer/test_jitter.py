"""Affine jitter of the real training images (``recipe.jitter_degrees`` / ``jitter_zoom``)."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from trainer.data import Split, tf_dataset  # noqa: E402
from trainer.nets.augment import affine_jitter  # noqa: E402


def _disk(radius: float) -> np.ndarray:
    """One 28x28 image in [-1, 1]: a centred ink disk on background -1."""
    yy, xx = np.mgrid[0:28, 0:28]
    inside = (yy - 13.5) ** 2 + (xx - 13.5) ** 2 <= radius**2
    return np.where(inside, 1.0, -1.0).astype("float32")[None, :, :, None]


def _bar() -> np.ndarray:
    image = -np.ones((1, 28, 28, 1), "float32")
    image[0, 4:24, 13:15, 0] = 1.0  # a vertical stroke through the centre
    return image


SEED = tf.constant([3, 7], tf.int64)


def test_no_jitter_is_the_identity():
    images = np.repeat(_bar(), 4, axis=0)
    np.testing.assert_array_equal(affine_jitter(images, 0.0, 0.0, SEED).numpy(), images)


def test_rotation_turns_a_stroke_but_leaves_a_centred_disk_and_the_background():
    disk, bar = _disk(8.0), _bar()
    rotated_disk = affine_jitter(np.repeat(disk, 8, axis=0), 30.0, 0.0, SEED).numpy()
    rotated_bar = affine_jitter(np.repeat(bar, 8, axis=0), 30.0, 0.0, SEED).numpy()
    assert np.all(rotated_bar[:, 0, 0, 0] == -1.0) and np.all(rotated_bar[:, -1, -1, 0] == -1.0)
    bar_moved = np.abs(rotated_bar - bar).reshape(8, -1).mean(axis=1)
    disk_moved = np.abs(rotated_disk - disk).reshape(8, -1).mean(axis=1)
    turned = bar_moved > 0.05  # most of 8 random angles in ±30° visibly turn the stroke
    assert np.count_nonzero(turned) >= 6
    # The same angles leave the disk alone but for its rim's interpolation: a quarter of the stroke's change.
    assert np.all(disk_moved[turned] < 0.4 * bar_moved[turned])


def test_zoom_scales_the_ink_area():
    zoomed = affine_jitter(np.repeat(_disk(6.0), 16, axis=0), 0.0, 0.3, SEED).numpy()
    ink = (zoomed > 0).reshape(16, -1).sum(axis=1)
    reference = (_disk(6.0) > 0).sum()
    assert ink.min() < reference < ink.max()  # some shrink, some grow


def test_same_seed_same_jitter_other_seed_other_jitter():
    images = np.repeat(_bar(), 4, axis=0)
    first = affine_jitter(images, 15.0, 0.1, SEED).numpy()
    np.testing.assert_array_equal(first, affine_jitter(images, 15.0, 0.1, SEED).numpy())
    assert not np.array_equal(first, affine_jitter(images, 15.0, 0.1, tf.constant([3, 8], tf.int64)).numpy())


def test_pipeline_applies_the_transform_reproducibly():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, 28, 28), dtype=np.uint8)
    split = Split(images, rng.integers(0, 10, 32).astype(np.int64))

    def transform(images, seed):
        return affine_jitter(images, 20.0, 0.1, seed)

    def batches(transform):
        return [(x.numpy(), y.numpy()) for x, y in tf_dataset(split, 8, 5, transform).take(3)]

    plain, jittered, again = batches(None), batches(transform), batches(transform)
    for (px, py), (jx, jy), (ax, _) in zip(plain, jittered, again, strict=True):
        np.testing.assert_array_equal(py, jy)  # labels are untouched and in the same order
        assert not np.array_equal(px, jx)
        np.testing.assert_array_equal(jx, ax)
