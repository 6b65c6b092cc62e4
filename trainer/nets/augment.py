"""Augmentation. Images are NHWC in [-1, 1]; background is -1, so every transform fills with -1.

Differentiable augmentation (Zhao et al., 2020; :func:`diff_augment`) goes on the discriminator's inputs,
real and fake alike, so D never sees un-augmented images and G is not pushed to produce the augmentations.
:func:`affine_jitter` is the opposite kind: it goes on the real training images only, so G *does* learn
the jittered digits. It widens a small training set with the variation a classifier's augmentation would
add (slant and size), and the generated set inherits it.
"""

from __future__ import annotations

import math

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


def affine_jitter(images, max_degrees: float, max_zoom: float, seed):
    """Rotate each image by up to ``max_degrees`` and scale it by up to ``1 ± max_zoom`` about its centre.

    ``seed`` is a stateless seed pair (a ``[2]`` int tensor), so a batch's jitter depends only on it.
    """
    batch = tf.shape(images)[0]
    h, w = images.shape[1], images.shape[2]
    draws = tf.random.stateless_uniform([batch, 2], seed, -1.0, 1.0)
    angle = draws[:, 0] * (max_degrees * math.pi / 180.0)
    scale = 1.0 + draws[:, 1] * max_zoom
    # The transform maps output pixels to input pixels: the inverse of "scale, then rotate".
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    zeros = tf.zeros_like(cos)
    transforms = tf.stack(
        [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, zeros, zeros], axis=1
    )
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.constant([h, w]),
        fill_value=-1.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


def diff_augment(images, seed, max_shift: int = 0, cutout_size: int = 0):
    """``seed`` is a ``keras.random.SeedGenerator``, so every call draws fresh shifts and squares."""
    return cutout(translate(images, max_shift, seed), cutout_size, seed)
