"""The service as a ``tf.data`` input pipeline. Importing this module needs TensorFlow; the rest of
cgan_client does not."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from cgan_client.client import Client


def dataset(
    client: Client,
    per_label: int,
    *,
    labels: Sequence[int | str] | None = None,
    seed: int | None = None,
    version: int | None = None,
    model: str | None = None,
    batch_size: int = 1024,
) -> tf.data.Dataset:
    """``(x, y)`` batches (uint8 ``[b, H, W]``, int64 ``[b]``) streamed from ``/dataset`` on each pass.

    The model version is resolved once, here, and pinned, so every epoch sees the same model; with a
    ``seed`` every epoch is the same data, without one each epoch draws a fresh seed (new images).
    """
    info = client.model_info(model, version)
    h, w, c = info["card"]["image_shape"]
    x_shape = (None, h, w) if c == 1 else (None, h, w, c)
    pinned = {"model": info["name"], "version": info["version"]}

    def batches():
        yield from client.iter_dataset(per_label, labels=labels, seed=seed, batch_size=batch_size, **pinned)

    return tf.data.Dataset.from_generator(
        batches,
        output_signature=(tf.TensorSpec(x_shape, tf.uint8), tf.TensorSpec((None,), tf.int64)),
    )
