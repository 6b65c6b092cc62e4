"""CGAN: the label enters both networks as an embedding (Mirza & Osindero 2014; the classic Keras article).

dense: the article's networks. The generator multiplies an ``Embedding(num_classes, latent_dim)`` of the label
into the noise; the discriminator multiplies an ``Embedding(num_classes, H*W*C)`` into the flattened image.
conv: a DCGAN-style generator fed ``[z, embedding]`` and a projection discriminator (Miyato & Koyama 2018):
``logit = w . h + embed(label) . h``, which conditions D without asking it to classify. With
``recipe.aux_classifier`` D also has a class head trained on real images only, and G gets a small class
term (``g_class_weight``): AC-GAN's label pressure without its full pull towards prototypes.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import layers, ops

from trainer.nets import blocks, losses
from trainer.variants.base import (
    ConditionalGAN,
    Recipe,
    Spec,
    accuracy_fake,
    accuracy_real,
    class_accuracy,
)


class CGAN(ConditionalGAN):
    variant = "cgan"

    def build_generator(self, spec: Spec, recipe: Recipe) -> keras.Model:
        z, label = blocks.generator_inputs(spec)
        if spec.arch == "dense":
            embedded = layers.Embedding(spec.num_classes, spec.latent_dim)(label)
            image = blocks.article_mlp(layers.Multiply()([z, embedded]), spec.image_shape)
        else:
            embedded = layers.Embedding(spec.num_classes, spec.latent_dim)(label)
            image = blocks.dcgan_upsampler(layers.Concatenate()([z, embedded]), label, spec, recipe)
        return keras.Model([z, label], image, name="generator")

    def discriminator_body(self, image, label, spec: Spec, recipe: Recipe):
        """(features, logit) of D before any head: the article's MLP for dense, the projection D for conv."""
        if spec.arch == "dense":
            embedded = layers.Embedding(spec.num_classes, math.prod(spec.image_shape))(label)
            joined = layers.Multiply()([layers.Flatten()(image), embedded])
            features = blocks.article_disc_mlp(joined, recipe.spectral_norm)
            return features, blocks.maybe_sn(layers.Dense(1), recipe.spectral_norm)(features)
        features = blocks.conv_trunk(image, recipe)
        unconditional = blocks.maybe_sn(layers.Dense(1), recipe.spectral_norm)(features)
        class_vector = layers.Embedding(spec.num_classes, features.shape[-1])(label)
        projection = ops.sum(features * class_vector, axis=-1, keepdims=True)
        return features, layers.Add()([unconditional, projection])

    def build_discriminator(self, spec: Spec, recipe: Recipe) -> keras.Model:
        image = keras.Input(spec.image_shape, name="image")
        label = keras.Input((), dtype="int32", name="label")
        features, logit = self.discriminator_body(image, label, spec, recipe)
        if spec.arch == "conv" and recipe.aux_classifier:
            class_logits = layers.Dense(spec.num_classes)(features)
            return keras.Model([image, label], [layers.Flatten()(logit), class_logits], name="discriminator")
        return keras.Model([image, label], layers.Flatten()(logit), name="discriminator")

    def metric_names(self) -> tuple[str, ...]:
        extra = ("class_acc_real", "class_acc_fake") if self.recipe.aux_classifier else ()
        return (*super().metric_names(), *extra)

    def _discriminate(self, images, labels):
        """(logits [N], class logits or None)."""
        out = self.discriminator([images, labels], training=True)
        if self.recipe.aux_classifier:
            return ops.reshape(out[0], (-1,)), out[1]
        return ops.reshape(out, (-1,)), None

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
            logits, class_logits = self._discriminate(images, labels)
            real_logits, fake_logits = logits[:batch], logits[batch:]
            d_loss = self.d_adversarial_loss(real_logits, fake_logits)
            if class_logits is not None:
                real_class_logits = class_logits[:batch]
                d_loss += self.recipe.class_weight * losses.auxiliary_class_loss(
                    real_labels, real_class_logits
                )
        self.apply(self.d_optimizer, tape, d_loss, self.discriminator.trainable_variables)

        # Train the generator to make D call its images real.
        z, fake_labels = self.sample_inputs(batch)
        with tf.GradientTape() as tape:
            generated = self.augment(self.generator([z, fake_labels], training=True))
            g_logits, g_class_logits = self._discriminate(generated, fake_labels)
            g_loss = self.g_loss_fn(g_logits)
            if g_class_logits is not None:
                g_loss += self.recipe.g_class_weight * losses.auxiliary_class_loss(
                    fake_labels, g_class_logits
                )
        self.apply(self.g_optimizer, tape, g_loss, self.generator.trainable_variables)

        self.update_ema()
        values = dict(
            d_loss=d_loss,
            g_loss=g_loss,
            d_real_acc=accuracy_real(real_logits),
            d_fake_acc=accuracy_fake(fake_logits),
        )
        if class_logits is not None:
            values.update(class_metrics(real_labels, real_class_logits, fake_labels, g_class_logits))
        return self.record(**values)


def class_metrics(real_labels, real_class_logits, fake_labels, fake_class_logits) -> dict:
    """The class head's accuracy on the real half of D's batch and on G's images, for the history."""
    return dict(
        class_acc_real=class_accuracy(real_labels, real_class_logits),
        class_acc_fake=class_accuracy(fake_labels, fake_class_logits),
    )
