"""AC-GAN (Odena et al. 2017): D also classifies, and G is rewarded when its images get their label.

The generator concatenates the noise with a label embedding. The discriminator has two heads on one trunk:
real/fake (binary cross-entropy or hinge) and class (sparse categorical cross-entropy on integer labels).
"""

from __future__ import annotations

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


class ACGAN(ConditionalGAN):
    variant = "acgan"

    def metric_names(self) -> tuple[str, ...]:
        return (*super().metric_names(), "class_acc_real", "class_acc_fake")

    def build_generator(self, spec: Spec, recipe: Recipe) -> keras.Model:
        z, label = blocks.generator_inputs(spec)
        embedded = layers.Embedding(spec.num_classes, spec.latent_dim)(label)
        joined = layers.Concatenate()([z, embedded])
        if spec.arch == "dense":
            image = blocks.article_mlp(joined, spec.image_shape)
        else:
            image = blocks.dcgan_upsampler(joined, label, spec, recipe)
        return keras.Model([z, label], image, name="generator")

    def build_discriminator(self, spec: Spec, recipe: Recipe) -> keras.Model:
        image = keras.Input(spec.image_shape, name="image")
        if spec.arch == "dense":
            features = blocks.article_disc_mlp(layers.Flatten()(image), recipe.spectral_norm)
        else:
            features = blocks.conv_trunk(image, recipe)
        validity = blocks.maybe_sn(layers.Dense(1), recipe.spectral_norm)(features)
        # No spectral norm on the class head: it is a plain classifier and SN slows its learning.
        class_logits = layers.Dense(spec.num_classes)(features)
        return keras.Model(image, [layers.Flatten()(validity), class_logits], name="discriminator")

    def train_step(self, data):
        real_images, real_labels = data
        real_labels = ops.cast(real_labels, "int32")
        batch = ops.shape(real_images)[0]
        recipe = self.recipe

        # Train the discriminator: real/fake on both; class on both (the paper) or on real images only.
        z, fake_labels = self.sample_inputs(batch)
        fake_images = self.generator([z, fake_labels], training=True)
        images = self.augment(ops.concatenate([real_images, fake_images], axis=0))
        labels = ops.concatenate([real_labels, fake_labels], axis=0)
        with tf.GradientTape() as tape:
            validity, class_logits = self.discriminator(images, training=True)
            validity = ops.reshape(validity, (-1,))
            real_logits, fake_logits = validity[:batch], validity[batch:]
            if recipe.classify_fake:
                class_loss = losses.auxiliary_class_loss(labels, class_logits)
            else:
                class_loss = losses.auxiliary_class_loss(real_labels, class_logits[:batch])
            d_loss = self.d_adversarial_loss(real_logits, fake_logits) + recipe.class_weight * class_loss
        self.apply(self.d_optimizer, tape, d_loss, self.discriminator.trainable_variables)

        # Train the generator: look real and look like the requested class.
        z, fake_labels = self.sample_inputs(batch)
        with tf.GradientTape() as tape:
            generated = self.augment(self.generator([z, fake_labels], training=True))
            g_validity, g_class_logits = self.discriminator(generated, training=True)
            g_loss = self.g_loss_fn(ops.reshape(g_validity, (-1,))) + recipe.g_class_weight * (
                losses.auxiliary_class_loss(fake_labels, g_class_logits)
            )
        self.apply(self.g_optimizer, tape, g_loss, self.generator.trainable_variables)

        self.update_ema()
        return self.record(
            d_loss=d_loss,
            g_loss=g_loss,
            d_real_acc=accuracy_real(real_logits),
            d_fake_acc=accuracy_fake(fake_logits),
            class_acc_real=class_accuracy(real_labels, class_logits[:batch]),
            class_acc_fake=class_accuracy(fake_labels, g_class_logits),
        )
