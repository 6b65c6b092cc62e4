"""CGAN: the label enters both networks as an embedding (Mirza & Osindero 2014; the classic Keras article).

dense: the article's networks. The generator multiplies an ``Embedding(num_classes, latent_dim)`` of the label
into the noise; the discriminator multiplies an ``Embedding(num_classes, H*W*C)`` into the flattened image.
conv: a DCGAN-style generator fed ``[z, embedding]`` and a projection discriminator (Miyato & Koyama 2018):
``logit = w . h + embed(label) . h``, which conditions D without asking it to classify.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import layers, ops

from trainer import blocks
from trainer.variants.base import ConditionalGAN, Recipe, Spec, accuracy_fake, accuracy_real
from trainer.variants.registry import register


@register("cgan")
class CGAN(ConditionalGAN):
    variant = "cgan"

    def build_generator(self, spec: Spec, recipe: Recipe) -> keras.Model:
        z, label = blocks.generator_inputs(spec)
        if spec.arch == "dense":
            embedded = layers.Embedding(spec.num_classes, spec.latent_dim)(label)
            image = blocks.article_mlp(layers.Multiply()([z, embedded]), spec.image_shape)
        else:
            embedded = layers.Embedding(spec.num_classes, spec.latent_dim)(label)
            image = blocks.dcgan_upsampler(
                layers.Concatenate()([z, embedded]), spec.image_shape, recipe.g_width
            )
        return keras.Model([z, label], image, name="generator")

    def build_discriminator(self, spec: Spec, recipe: Recipe) -> keras.Model:
        image = keras.Input(spec.image_shape, name="image")
        label = keras.Input((), dtype="int32", name="label")
        if spec.arch == "dense":
            embedded = layers.Embedding(spec.num_classes, math.prod(spec.image_shape))(label)
            joined = layers.Multiply()([layers.Flatten()(image), embedded])
            features = blocks.article_disc_mlp(joined, recipe.spectral_norm)
            logit = blocks.maybe_sn(layers.Dense(1), recipe.spectral_norm)(features)
        else:
            features = blocks.conv_trunk(image, recipe.spectral_norm, recipe.d_width)
            unconditional = blocks.maybe_sn(layers.Dense(1), recipe.spectral_norm)(features)
            class_vector = layers.Embedding(spec.num_classes, features.shape[-1])(label)
            projection = ops.sum(features * class_vector, axis=-1, keepdims=True)
            logit = layers.Add()([unconditional, projection])
        return keras.Model([image, label], layers.Flatten()(logit), name="discriminator")

    def train_step(self, data):
        real_images, real_labels = data
        real_labels = ops.cast(real_labels, "int32")
        batch = ops.shape(real_images)[0]

        # Train the discriminator on real and fake images in one pass.
        z, fake_labels = self.sample_inputs(batch)
        fake_images = self.generator([z, fake_labels], training=True)
        images = self.augment(ops.concatenate([real_images, fake_images], axis=0))
        labels = ops.concatenate([real_labels, fake_labels], axis=0)
        with tf.GradientTape() as tape:
            logits = ops.reshape(self.discriminator([images, labels], training=True), (-1,))
            real_logits, fake_logits = logits[:batch], logits[batch:]
            d_loss = self.d_adversarial_loss(real_logits, fake_logits)
        self.apply(self.d_optimizer, tape, d_loss, self.discriminator.trainable_variables)

        # Train the generator to make D call its images real.
        z, fake_labels = self.sample_inputs(batch)
        with tf.GradientTape() as tape:
            generated = self.augment(self.generator([z, fake_labels], training=True))
            g_logits = ops.reshape(self.discriminator([generated, fake_labels], training=True), (-1,))
            g_loss = self.g_loss_fn(g_logits)
        self.apply(self.g_optimizer, tape, g_loss, self.generator.trainable_variables)

        self.update_ema()
        return self.record(
            d_loss=d_loss,
            g_loss=g_loss,
            d_real_acc=accuracy_real(real_logits),
            d_fake_acc=accuracy_fake(fake_logits),
        )
