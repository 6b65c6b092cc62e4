"""Adam with TensorFlow's fused update kernel."""

from __future__ import annotations

import keras
import tensorflow as tf


class Adam(keras.optimizers.Adam):
    """``keras.optimizers.Adam``, same variables and formula, but each dense update is one
    ``ResourceApplyAdam`` kernel instead of about a dozen element-wise ops, each a pass over the variable.

    Named ``Adam`` because Keras names an optimizer after its class ("adam", "adam_1", ...) and a checkpoint
    stores its variables by those paths: runs written with Keras's Adam resume with this one.

    On the default conv recipe those passes were ~8% of a training step (BENCHMARKS.md, "Training
    throughput"). AMSGrad and non-TensorFlow backends take Keras's own update.
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or keras.backend.backend() != "tensorflow":
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=self._momentums[index].handle,
            v=self._velocities[index].handle,
            beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(tf.convert_to_tensor(gradient), dtype),
        )
