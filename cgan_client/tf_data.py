"""The service as a ``tf.data`` input pipeline. Importing this module needs TensorFlow; the rest of
cgan_client does not.

    train = cgan_client.tf_data.dataset(api, per_label=1000)   # 10,000 images a pass, batches of 32
    model.fit(train.map(scale), epochs=3)

What it hands Keras is ready to train on as it comes: the service sends a data set class-mixed (its
``"shuffled"`` order: every batch holds every label in equal shares), in training-sized batches, with a known
number of batches per pass, prefetched while the model trains.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from cgan_client import _passes
from cgan_client.client import Client


def dataset(
    client: Client,
    per_label: int,
    *,
    labels: Sequence[int | str] | None = None,
    seed: int | None = None,
    version: int | None = None,
    model: str | None = None,
    order: str = _passes.DEFAULT_ORDER,
    batch_size: int = 32,
    endless: bool = False,
    prefetch: bool = True,
) -> tf.data.Dataset:
    """``(x, y)`` batches (uint8 ``[b, H, W]``, int64 ``[b]``) of the service's images.

    One *pass* is a data set of ``per_label`` images of each label (every class by default), streamed from
    ``/dataset`` in ``order`` (class-mixed by default) and regrouped into ``batch_size`` batches (the last may
    be smaller); how the bytes travel does not depend on it.

    * finite (default): each epoch is one pass; the dataset's cardinality is the batches of a pass, so
      Keras knows the epoch's length. With a ``seed`` every epoch is the same images; without one each
      epoch draws a fresh seed (new images).
    * ``endless=True``: passes follow each other forever, pass k from seed ``base + k * N`` (``base``: the
      ``seed``, else a random one), so seeds continue and no image repeats; give ``fit`` a
      ``steps_per_epoch``.

    The model version is resolved once, here, and pinned, so every pass sees the same model. Arguments are
    checked here, and the service checks the request once before the dataset is returned (one image), so
    bad input raises now (``ValueError``, or :class:`~cgan_client.ServiceError` naming the field), not in
    the middle of ``fit``.
    """
    plan = _passes.plan(client, per_label, labels, seed, version, model, order, batch_size, endless)
    h, w, c = plan.image_shape
    x_shape = (None, h, w) if c == 1 else (None, h, w, c)

    def batches():
        yield from plan.batches(client)

    data = tf.data.Dataset.from_generator(
        batches, output_signature=(tf.TensorSpec(x_shape, tf.uint8), tf.TensorSpec((None,), tf.int64))
    )
    data = data.apply(
        tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY if endless else plan.count)
    )
    return data.prefetch(tf.data.AUTOTUNE) if prefetch else data
