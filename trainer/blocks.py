"""Network pieces the variants share. Sizes come from :class:`~trainer.variants.base.Spec`."""

from __future__ import annotations

import math

import keras
from keras import layers


def maybe_sn(layer, spectral_norm: bool):
    return layers.SpectralNormalization(layer) if spectral_norm else layer


def generator_inputs(spec):
    z = keras.Input((spec.latent_dim,), name="z")
    label = keras.Input((), dtype="int32", name="label")
    return z, label


def article_mlp(x, image_shape):
    """The article's generator body: Dense 256-512-1024, LeakyReLU(0.2) + BatchNorm(momentum 0.8), tanh."""
    for units in (256, 512, 1024):
        x = layers.Dense(units)(x)
        x = layers.LeakyReLU(0.2)(x)
        x = layers.BatchNormalization(momentum=0.8)(x)
    x = layers.Dense(math.prod(image_shape), activation="tanh")(x)
    return layers.Reshape(image_shape)(x)


def dcgan_upsampler(x, image_shape, width: int = 64):
    """Dense -> 7x7 -> two stride-2 transposed convs -> image; tanh output."""
    h, w, c = image_shape
    if h % 4 or w % 4:
        raise ValueError(f"conv arch needs image sides divisible by 4, got {h}x{w}")
    x = layers.Dense((h // 4) * (w // 4) * width * 2, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.LeakyReLU(0.2)(x)
    x = layers.Reshape((h // 4, w // 4, width * 2))(x)
    for filters in (width, width // 2):
        x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.LeakyReLU(0.2)(x)
    return layers.Conv2D(c, 3, padding="same", activation="tanh")(x)


def article_disc_mlp(x, spectral_norm: bool = False):
    """The article's discriminator body: Dense 512 -> 256 with LeakyReLU(0.2)."""
    for units in (512, 256):
        x = maybe_sn(layers.Dense(units), spectral_norm)(x)
        x = layers.LeakyReLU(0.2)(x)
    return x


def conv_trunk(x, spectral_norm: bool, width: int = 64):
    """Stride-2 convs down to a quarter of the image side, then a dense feature vector."""
    for filters in (width // 2, width):
        x = maybe_sn(layers.Conv2D(filters, 4, strides=2, padding="same"), spectral_norm)(x)
        x = layers.LeakyReLU(0.2)(x)
    x = layers.Flatten()(x)
    x = maybe_sn(layers.Dense(width * 4), spectral_norm)(x)
    return layers.LeakyReLU(0.2)(x)
