"""Conditional EBGAN (Zhao, Mathieu & LeCun 2016): D is an autoencoder, its reconstruction error an energy.

D learns to reconstruct real images (low energy) and to push fakes up to a margin ``m``
(:func:`~trainer.nets.losses.ebgan_discriminator_loss`); G lowers the energy of its images, plus a
pulling-away term on the encoder's codes of the fake batch that penalises parallel codes (a collapsing
batch). The generator is CGAN's for each arch, so it exports through the same two-input contract.

Conditioning D on the label (``recipe.ae_condition``):

* ``"input"`` (the recipes'): the label's embedding enters the encoder as an extra image channel (dense:
  extra input units), so the encoder can tell an image that does not look like its label.
* ``"code"``: the embedding is concatenated to the code, so only the decoder hears the label.

Either way, the paper's loss never shows D a real image under a wrong label, so nothing makes the energy
depend on the label: both conditionings left G's label accuracy at chance. ``recipe.mismatch_weight``
adds those negatives (real images, each under a random other label) to D's margin term. With them and a
margin of 0.3, a 1,500-step dense run (mnist-5k) scored 78% label accuracy with ``"input"`` and 20% with
``"code"`` by the evaluation's judge (``python -m bench.experiments.ebgan_conditioning``; QUALITY.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import keras
from keras import layers, ops

from trainer.config import NON_NEGATIVE, POSITIVE, knob
from trainer.nets import blocks, losses
from trainer.variants.base import ConditionalGAN, DBatch, Fakes, Recipe, Spec
from trainer.variants.cgan import CGAN

CONDITIONS = ("code", "input")


class EBGAN(ConditionalGAN):
    variant = "ebgan"
    loss_kinds = ("ebgan",)  # its D scores energies, the others' logits

    @dataclass(frozen=True)
    class Extras:
        margin: float = knob(
            0.3, NON_NEGATIVE
        )  # D pushes fake energies (per-image MSE, in [0, 4]) up to this
        pt_weight: float = knob(0.1, NON_NEGATIVE)  # weight of the pulling-away term in G's objective (paper)
        ae_condition: str = knob("input", CONDITIONS)  # the label enters D's autoencoder at the input or code
        ae_code_dim: int = knob(64, POSITIVE)  # width of the autoencoder's code
        mismatch_weight: float = knob(0.0, NON_NEGATIVE)  # margin term on real images under a wrong label

    @classmethod
    def default_recipe(cls, arch: str) -> Recipe:
        """Margin, conditioning and wrong-label negatives from bench/experiments/ebgan_conditioning.py
        (QUALITY.md);
        conv: MODERN's optimiser, EMA and DiffAugment with CGAN's class-conditional BatchNorm in G, and no
        spectral norm (the autoencoder must reconstruct, not only score)."""
        recipe = replace(super().default_recipe(arch), loss="ebgan", mismatch_weight=1.0)
        if arch == "conv":
            recipe = replace(recipe, spectral_norm=False, cond_bn=True)
        return recipe

    @classmethod
    def recipe_problem(cls, recipe: Recipe, arch: str) -> str | None:
        problem = super().recipe_problem(recipe, arch)
        if problem is None and recipe.lecam_weight:
            problem = "lecam_weight needs a logit discriminator; EBGAN's scores energies"
        return problem

    # The generator every other variant of that arch ships (CGAN's), so the export contract is unchanged.
    build_generator = CGAN.build_generator

    def build_discriminator(self, spec: Spec, recipe: Recipe) -> keras.Model:
        """``[image, label] -> [reconstruction in [-1, 1], code [N, ae_code_dim]]``."""
        image = keras.Input(spec.image_shape, name="image")
        label = keras.Input((), dtype="int32", name="label")
        by_input = recipe.ae_condition == "input"
        pixels = math.prod(spec.image_shape)
        if spec.arch == "dense":
            x = layers.Flatten()(image)
            if by_input:
                x = layers.Concatenate()([x, layers.Embedding(spec.num_classes, pixels)(label)])
            features = blocks.article_disc_mlp(x, recipe.spectral_norm)
        else:
            x = image
            if by_input:
                channel = layers.Embedding(spec.num_classes, pixels // spec.image_shape[-1])(label)
                channel = layers.Reshape((*spec.image_shape[:2], 1))(channel)
                x = layers.Concatenate()([x, channel])
            features = blocks.conv_trunk(x, recipe)
        code = blocks.maybe_sn(layers.Dense(recipe.ae_code_dim), recipe.spectral_norm)(features)
        decoder_in = code
        if not by_input:
            embedded = layers.Embedding(spec.num_classes, recipe.ae_code_dim)(label)
            decoder_in = layers.Concatenate()([code, embedded])
        if spec.arch == "dense":
            reconstruction = _mlp_decoder(decoder_in, spec.image_shape)
        else:
            reconstruction = _conv_decoder(decoder_in, spec.image_shape, recipe.d_width)
        return keras.Model([image, label], [reconstruction, code], name="discriminator")

    def metric_names(self) -> tuple[str, ...]:
        return ("d_loss", "g_loss", "real_energy", "fake_energy", "pull_away")

    def discriminator_batch(self, images, labels, real_labels):
        """With ``mismatch_weight``, real images under a wrong label are negatives too: the one signal that
        teaches D the label."""
        if not self.recipe.mismatch_weight:
            return images, labels
        size = ops.shape(real_labels)[0]
        shift = keras.random.randint((size,), 1, self.spec.num_classes, seed=self.seed_generator)
        images = ops.concatenate([images, images[:size]], axis=0)
        return images, ops.concatenate([labels, (real_labels + shift) % self.spec.num_classes], axis=0)

    def discriminate(self, images, labels, training=True) -> dict:
        """``energy`` [N] of each image under its label, and the autoencoder's ``code`` [N, k]."""
        reconstruction, code = self.discriminator([images, labels], training=training)
        return {"energy": losses.ebgan_energy(images, reconstruction), "code": code}

    def d_adversarial(self, seen: dict, size) -> tuple[object, dict]:
        """Reconstruct real images, push fakes' energy up to the margin."""
        real_energy, fake_energy = seen["energy"][:size], seen["energy"][size : 2 * size]
        loss = losses.ebgan_discriminator_loss(real_energy, fake_energy, self.recipe.margin)
        return loss, {"real_energy": ops.mean(real_energy), "fake_energy": ops.mean(fake_energy)}

    def g_adversarial(self, seen: dict):
        """Low energy: images D reconstructs well."""
        return losses.ebgan_generator_loss(seen["energy"])

    def discriminator_terms(self, seen: dict, batch: DBatch) -> tuple[list, dict]:
        """The margin term on the wrong-label negatives (:meth:`discriminator_batch`)."""
        if not self.recipe.mismatch_weight:
            return [], {}
        mismatch = losses.ebgan_margin_loss(seen["energy"][2 * batch.size :], self.recipe.margin)
        return [self.recipe.mismatch_weight * mismatch], {}

    def generator_terms(self, seen: dict, fakes: Fakes) -> tuple[list, dict]:
        """Codes that pull away from each other (the paper's PT), against a collapsed batch."""
        pull_away = losses.ebgan_pulling_away_term(seen["code"])
        return [self.recipe.pt_weight * pull_away], {"pull_away": pull_away}


def _mlp_decoder(x, image_shape):
    """The article D's body mirrored: Dense 256 -> 512 -> image, tanh (pixels are in [-1, 1])."""
    for units in (256, 512):
        x = layers.LeakyReLU(0.2)(layers.Dense(units)(x))
    x = layers.Dense(math.prod(image_shape), activation="tanh")(x)
    return layers.Reshape(image_shape)(x)


def _conv_decoder(x, image_shape, width: int):
    """:func:`~trainer.nets.blocks.conv_trunk` mirrored: dense -> quarter-size map -> two stride-2
    transposed convs -> image, tanh. No BatchNorm: energies must not depend on the batch."""
    h, w, c = image_shape
    x = layers.LeakyReLU(0.2)(layers.Dense((h // 4) * (w // 4) * width)(x))
    x = layers.Reshape((h // 4, w // 4, width))(x)
    for filters in (width, width // 2):
        x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same")(x)
        x = layers.LeakyReLU(0.2)(x)
    return layers.Conv2D(c, 3, padding="same", activation="tanh")(x)
