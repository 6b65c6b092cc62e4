"""The compiled inner loop: run k train steps per Python call, so dispatch costs nothing next to the math."""

from __future__ import annotations

import tensorflow as tf


def make_runner(model, jit_compile: bool):
    """Return ``run(iterator, k) -> logs`` that executes ``model.train_step`` k times in one graph call.

    The step is XLA-compiled when ``jit_compile``; the loop around it pulls batches from the tf.data
    iterator, which XLA cannot compile, so it stays in the outer (non-XLA) graph.
    """
    step = tf.function(model.train_step, jit_compile=jit_compile)

    @tf.function
    def run(iterator, k):
        logs = step(next(iterator))
        for _ in tf.range(k - 1):
            logs = step(next(iterator))
        return logs

    return run
