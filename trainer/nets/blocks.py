"""Network pieces the variants share. Sizes come from :class:`~trainer.config.Spec`."""

from __future__ import annotations

import math

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="cgan_synth")
class SpectralNorm(layers.Wrapper):
    """Spectral normalisation (Miyato et al. 2018) of a Dense or Conv2D: the layer computes with W / sigma(W),
    sigma estimated by one power iteration per training call, and the gradient flows through sigma.

    Not ``keras.layers.SpectralNormalization``: that one overwrites the stored kernel with W / sigma on
    every training call and differentiates as if sigma were a constant, a different optimisation problem.
    A port of both to PyTorch (same networks, same data) measured the reparametrised form much better on
    fashion-mnist: FID 4.09 -> 1.08, GAN-train 79.7% -> 84.6% (QUALITY.md).
    """

    def build(self, input_shape=None):
        super().build(input_shape)
        if not isinstance(self.layer, (layers.Dense, layers.Conv2D)):
            raise TypeError(f"SpectralNorm wraps Dense or Conv2D, not {type(self.layer).__name__}")
        self.u = self.add_weight(
            shape=(1, self.layer.kernel.shape[-1]),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            trainable=False,
            name="u",
        )

    def normalized_kernel(self, training=False):
        # The power iteration and sigma stay float32 whatever the wrapped layer computes in.
        kernel = self.layer.kernel
        w = ops.reshape(kernel, (-1, kernel.shape[-1]))  # [fan_in, out]
        v = _unit(ops.matmul(self.u, ops.transpose(w)))
        u = _unit(ops.matmul(v, w))
        u, v = ops.stop_gradient(u), ops.stop_gradient(v)
        sigma = ops.sum(ops.matmul(v, w) * u)
        if training:
            self.u.assign(u)
        return kernel / sigma

    def call(self, inputs, training=False):
        layer = self.layer
        kernel = self.normalized_kernel(training)
        if layer.compute_dtype != "float32":  # the wrapped layer's dtype policy asks for e.g. bfloat16
            inputs, kernel = ops.cast(inputs, layer.compute_dtype), ops.cast(kernel, layer.compute_dtype)
        if isinstance(layer, layers.Conv2D):
            out = ops.conv(
                inputs,
                kernel,
                strides=layer.strides,
                padding=layer.padding,
                data_format=layer.data_format,
                dilation_rate=layer.dilation_rate,
            )
        else:
            out = ops.matmul(inputs, kernel)
        out = ops.cast(out, "float32")
        if layer.use_bias:
            out = out + layer.bias
        return layer.activation(out) if layer.activation is not None else out

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


def _unit(x, eps=1e-12):
    return x / (ops.sqrt(ops.sum(x * x)) + eps)


def maybe_sn(layer, spectral_norm: bool):
    return SpectralNorm(layer) if spectral_norm else layer


def compute_policy(recipe) -> str | None:
    """The Keras dtype policy of the layers that carry the arithmetic (convs, big matmuls): their weights
    stay float32 and their outputs go back to float32 at the next layer (BatchNorm, LeakyReLU)."""
    return "mixed_bfloat16" if recipe.compute_dtype == "bfloat16" else None


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


@keras.saving.register_keras_serializable(package="cgan_synth")
class ConditionalBatchNorm(layers.Layer):
    """BatchNorm whose scale and shift are looked up per class (de Vries et al. 2017; BigGAN's generator).

    Every layer of the generator then hears the label, not only its input; starts as plain BatchNorm
    (gain 1, bias 0).
    """

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.norm = layers.BatchNormalization(center=False, scale=False)

    def build(self, input_shape):
        channels = input_shape[0][-1]
        self.norm.build(input_shape[0])
        self.gain = layers.Embedding(self.num_classes, channels, embeddings_initializer="ones")
        self.bias = layers.Embedding(self.num_classes, channels, embeddings_initializer="zeros")
        self.gain.build(input_shape[1])
        self.bias.build(input_shape[1])

    def call(self, inputs, training=None):
        x, label = inputs
        # [N, C] -> [N, 1, ..., 1, C] so it broadcasts over a dense vector or a feature map alike.
        shape = (-1,) + (1,) * (len(x.shape) - 2) + (x.shape[-1],)
        gain = ops.reshape(self.gain(label), shape)
        bias = ops.reshape(self.bias(label), shape)
        if training and len(x.shape) == 4 and keras.backend.backend() == "tensorflow":
            return self._fused_batch_norm(x) * gain + bias
        return self.norm(x, training=training) * gain + bias

    def _fused_batch_norm(self, x):
        """``self.norm(x, training=True)`` in TensorFlow's fused kernel, same variables and statistics.

        Keras's BatchNormalization composes moments and the normalisation from separate ops, and their
        gradient from a dozen more; on the default conv generator that was 15% of a training step
        (BENCHMARKS.md, "Training throughput"). The fused kernel and its gradient are one op each.
        """
        import tensorflow as tf

        norm, channels = self.norm, x.shape[-1]
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, tf.ones([channels]), tf.zeros([channels]), epsilon=norm.epsilon, is_training=True
        )
        # The kernel returns the unbiased variance for the running average; Keras keeps the biased one.
        count = ops.cast(ops.size(x) // channels, "float32")
        variance = variance * (count - 1.0) / count
        momentum = norm.momentum
        norm.moving_mean.assign(norm.moving_mean * momentum + mean * (1.0 - momentum))
        norm.moving_variance.assign(norm.moving_variance * momentum + variance * (1.0 - momentum))
        return y

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


def _normalise(x, label, num_classes: int):
    if label is None:
        return layers.BatchNormalization()(x)
    return ConditionalBatchNorm(num_classes)([x, label])


def dcgan_upsampler(x, label, spec, recipe):
    """Dense -> 7x7 -> two stride-2 transposed convs -> image; tanh output; ``recipe.g_width`` channels.

    With ``recipe.cond_bn``, each BatchNorm is a :class:`ConditionalBatchNorm` on ``label``.
    """
    h, w, c = spec.image_shape
    width, num_classes = recipe.g_width, spec.num_classes
    label = label if recipe.cond_bn else None
    policy = compute_policy(recipe)
    if h % 4 or w % 4:
        raise ValueError(f"conv arch needs image sides divisible by 4, got {h}x{w}")
    x = layers.Dense((h // 4) * (w // 4) * width * 2, use_bias=False, dtype=policy)(x)
    x = _normalise(x, label, num_classes)
    x = layers.LeakyReLU(0.2)(x)
    x = layers.Reshape((h // 4, w // 4, width * 2))(x)
    for filters in (width, width // 2):
        x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False, dtype=policy)(x)
        x = _normalise(x, label, num_classes)
        x = layers.LeakyReLU(0.2)(x)
    image = layers.Conv2D(c, 3, padding="same", activation="tanh", dtype=policy)(x)
    return image if policy is None else layers.Activation("linear", dtype="float32")(image)


def article_disc_mlp(x, spectral_norm: bool = False):
    """The article's discriminator body: Dense 512 -> 256 with LeakyReLU(0.2)."""
    for units in (512, 256):
        x = maybe_sn(layers.Dense(units), spectral_norm)(x)
        x = layers.LeakyReLU(0.2)(x)
    return x


def conv_trunk(x, recipe):
    """Stride-2 convs down to a quarter of the image side, then a dense feature vector
    (``recipe.d_width`` channels at the end, spectral norm and compute dtype as the recipe says)."""
    spectral_norm, width, policy = recipe.spectral_norm, recipe.d_width, compute_policy(recipe)
    for filters in (width // 2, width):
        x = maybe_sn(layers.Conv2D(filters, 4, strides=2, padding="same", dtype=policy), spectral_norm)(x)
        x = layers.LeakyReLU(0.2)(x)
    x = layers.Flatten()(x)
    x = maybe_sn(layers.Dense(width * 4, dtype=policy), spectral_norm)(x)
    return layers.LeakyReLU(0.2)(x)
