"""AC-GAN (Odena et al. 2017): D also classifies, and G is rewarded when its images get their label.

The generator concatenates the noise with a label embedding. The discriminator has two heads on one trunk:
real/fake (binary cross-entropy or hinge) and class (sparse categorical cross-entropy on integer labels).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers, ops

from trainer.nets import blocks, losses
from trainer.variants.base import ConditionalGAN, DBatch, Fakes, Recipe, Spec, class_accuracy


class ACGAN(ConditionalGAN):
    variant = "acgan"

    @dataclass(frozen=True)
    class Extras:
        classify_fake: bool = True  # D also learns to classify fakes (the paper); False = real images only

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

    def discriminate(self, images, labels, training=True) -> dict:
        """``logits`` [N] and ``class_logits`` [N, classes]; this D is not told the label."""
        validity, class_logits = self.discriminator(images, training=training)
        return {"logits": ops.reshape(validity, (-1,)), "class_logits": class_logits}

    def discriminator_terms(self, seen: dict, batch: DBatch) -> tuple[list, dict]:
        """Class on both halves (the paper), or on real images only (``classify_fake`` false)."""
        class_logits = seen["class_logits"]
        if self.recipe.classify_fake:
            class_loss = losses.auxiliary_class_loss(batch.labels, class_logits)
        else:
            class_loss = losses.auxiliary_class_loss(batch.real_labels, class_logits[: batch.size])
        real_accuracy = class_accuracy(batch.real_labels, class_logits[: batch.size])
        return [self.recipe.class_weight * class_loss], {"class_acc_real": real_accuracy}

    def generator_terms(self, seen: dict, fakes: Fakes) -> tuple[list, dict]:
        """Look like the requested class."""
        class_loss = losses.auxiliary_class_loss(fakes.labels, seen["class_logits"])
        accuracy = class_accuracy(fakes.labels, seen["class_logits"])
        return [self.recipe.g_class_weight * class_loss], {"class_acc_fake": accuracy}
