"""A faithful port of the classic Keras-GAN ``cgan.py`` training loop, kept only as a speed baseline.

Per step: ``generator.predict`` + ``discriminator.train_on_batch`` (real) + ``train_on_batch`` (fake) +
``combined.train_on_batch``, with ``discriminator.trainable = False`` before compiling the combined model,
exactly as the article does. (On Keras 3 that toggle also freezes the discriminator's own updates; the
article's loop is timed here as written, with the same networks as ``trainer``'s dense CGAN.)
"""

from __future__ import annotations

import time

import keras
import numpy as np

from trainer.config import ARTICLE
from trainer.variants import Spec, build


def article_loop(
    images: np.ndarray, labels: np.ndarray, steps: int, batch_size: int = 32, latent_dim: int = 100
):
    """Run the article's loop; return images/s over ``steps`` steps after a short warm-up."""
    gan = build("cgan", Spec(latent_dim, 10, (28, 28, 1), "dense"), ARTICLE)
    generator, discriminator = gan.generator, gan.discriminator
    optimizer = keras.optimizers.Adam(2e-4, 0.5)
    discriminator.compile(
        loss=keras.losses.BinaryCrossentropy(from_logits=True), optimizer=optimizer, metrics=["accuracy"]
    )
    z = keras.Input((latent_dim,))
    label = keras.Input((), dtype="int32")
    discriminator.trainable = False
    combined = keras.Model([z, label], discriminator([generator([z, label]), label]))
    combined.compile(loss=keras.losses.BinaryCrossentropy(from_logits=True), optimizer=optimizer)

    x = images.astype(np.float32)[..., None] / 127.5 - 1.0
    valid = np.ones((batch_size, 1))
    fake = np.zeros((batch_size, 1))
    rng = np.random.default_rng(0)

    def step():
        idx = rng.integers(0, len(x), batch_size)
        noise = rng.normal(0, 1, (batch_size, latent_dim))
        gen_imgs = generator.predict([noise, labels[idx]], verbose=0)
        discriminator.train_on_batch([x[idx], labels[idx]], valid)
        discriminator.train_on_batch([gen_imgs, labels[idx]], fake)
        sampled = rng.integers(0, 10, (batch_size,))
        combined.train_on_batch([noise, sampled], valid)

    for _ in range(10):
        step()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - began)
