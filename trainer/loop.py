"""The compiled inner loop: many train steps per Python call, so dispatch costs nothing next to the math."""

from __future__ import annotations

import tensorflow as tf

#: Steps fused into one XLA call; the dataset then yields blocks of this many batches.
BLOCK = 10


def blocks(dataset, block: int = BLOCK):
    """Group a batched dataset into ``[block, batch, ...]`` tensors for :func:`make_runner` with XLA."""
    return dataset.batch(block, drop_remainder=True).prefetch(2)


def make_runner(model, jit_compile: bool):
    """Return ``run(iterator, k) -> logs`` that executes ``model.train_step`` k times.

    Without XLA, one graph call loops over batches from the iterator. With XLA the iterator yields blocks
    of :data:`BLOCK` batches (see :func:`blocks`) and a whole block runs in one compiled while-loop: the
    tf.data hand-off and the per-step dispatch happen once per block (measured: 6.3k -> 8.5k images/s
    for the dense CGAN at batch 32 on 2 cores).
    """
    if not jit_compile:
        step = tf.function(model.train_step)

        @tf.function
        def run(iterator, k):
            logs = step(next(iterator))
            for _ in tf.range(k - 1):
                logs = step(next(iterator))
            return logs

        return run

    @tf.function(jit_compile=True)
    def fused(images, labels, count):
        logs = model.train_step((images[0], labels[0]))
        for i in tf.range(1, count):
            logs = model.train_step((images[i], labels[i]))
        return logs

    def run(iterator, k):
        k = int(k)
        while True:
            images, labels = next(iterator)
            count = min(k, BLOCK)
            logs = fused(images, labels, tf.constant(count))
            k -= count
            if k <= 0:
                return logs

    return run
