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
from dataclasses import replace

import keras
from keras import layers, ops

from trainer.nets import blocks, losses
from trainer.variants.base import ConditionalGAN, DBatch, Fakes, Recipe, Spec, class_accuracy


class CGAN(ConditionalGAN):
    variant = "cgan"

    @classmethod
    def default_recipe(cls, arch: str) -> Recipe:
        """conv: class-conditional BatchNorm in G, and a real-only class head on the projection D with a
        0.3-weighted class term for G (QUALITY.md)."""
        recipe = super().default_recipe(arch)
        if arch == "conv":
            recipe = replace(recipe, cond_bn=True, aux_classifier=True, g_class_weight=0.3)
        return recipe

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

    def discriminate(self, images, labels, training=True) -> dict:
        """``logits`` [N], and with the class head ``class_logits`` [N, classes]."""
        out = self.discriminator([images, labels], training=training)
        if self.recipe.aux_classifier:
            return {"logits": ops.reshape(out[0], (-1,)), "class_logits": out[1]}
        return {"logits": ops.reshape(out, (-1,))}

    def discriminator_terms(self, seen: dict, batch: DBatch) -> tuple[list, dict]:
        """The class head learns the labels of the real half."""
        if "class_logits" not in seen:
            return [], {}
        real_class_logits = seen["class_logits"][: batch.size]
        term = self.recipe.class_weight * losses.auxiliary_class_loss(batch.real_labels, real_class_logits)
        return [term], {"class_acc_real": class_accuracy(batch.real_labels, real_class_logits)}

    def generator_terms(self, seen: dict, fakes: Fakes) -> tuple[list, dict]:
        """With the class head, a small pull towards looking like the label (``g_class_weight``)."""
        if "class_logits" not in seen:
            return [], {}
        term = self.recipe.g_class_weight * losses.auxiliary_class_loss(fakes.labels, seen["class_logits"])
        return [term], {"class_acc_fake": class_accuracy(fakes.labels, seen["class_logits"])}
