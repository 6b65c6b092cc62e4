"""Differentiable augmentation (Zhao et al., 2020) for the discriminator's inputs, real and fake alike.

Applied to both so D never sees un-augmented images and G is not pushed to produce the augmentations.
Images are NHWC in [-1, 1]; background is -1, so translation pads with -1.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def translate(images, max_shift: int, seed):
    """Shift each image by up to ``max_shift`` pixels in x and y, filling with background."""
    if max_shift <= 0:
        return images
    batch = tf.shape(images)[0]
    h, w = images.shape[1], images.shape[2]
    shifts = keras.random.randint([batch, 2], -max_shift, max_shift + 1, dtype="int32", seed=seed)
    padded = tf.pad(images + 1.0, [[0, 0], [max_shift, max_shift], [max_shift, max_shift], [0, 0]]) - 1.0
    rows = tf.range(h)[None, :] + max_shift - shifts[:, :1]
    cols = tf.range(w)[None, :] + max_shift - shifts[:, 1:]
    out = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(out, cols, axis=2, batch_dims=1)


def cutout(images, size: int, seed):
    """Blank one ``size`` x ``size`` square per image to background."""
    if size <= 0:
        return images
    batch = tf.shape(images)[0]
    h, w = images.shape[1], images.shape[2]
    centre = keras.random.randint([batch, 2], 0, h, dtype="int32", seed=seed)
    ys = tf.range(h)[None, :, None]
    xs = tf.range(w)[None, None, :]
    cy, cx = centre[:, 0, None, None], centre[:, 1, None, None]
    inside = (tf.abs(ys - cy) * 2 < size) & (tf.abs(xs - cx) * 2 < size)
    return tf.where(inside[..., None], -tf.ones_like(images), images)


def diff_augment(images, seed, max_shift: int = 0, cutout_size: int = 0):
    """``seed`` is a ``keras.random.SeedGenerator``, so every call draws fresh shifts and squares."""
    return cutout(translate(images, max_shift, seed), cutout_size, seed)
