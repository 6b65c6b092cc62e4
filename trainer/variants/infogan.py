"""Class-conditional InfoGAN (Chen et al. 2016): G also takes ``k`` continuous style codes, and a head Q on
D's body must recover them from the image, so the codes learn, without labels, what varies inside a class.

The class is the supervised categorical code: InfoGAN is a :class:`~.cgan.CGAN` whose D has CGAN's body
(an embedding multiplied into the flattened image for dense, a projection D for conv) and optional
real-only class head, so the label terms are exactly CGAN's recipe; Q is one more head on that body.
G maps ``[z, label, codes]`` to an image; the codes are drawn uniform in :data:`CODE_RANGE`, which is
what the contract's seed rule (:func:`cgan_contract.codes_for_seeds`) draws at serve time.

Q's loss is the mean squared error between the codes and Q's estimate, weighted by ``recipe.q_weight`` in
both D's and G's objective. MSE is the Gaussian negative log-likelihood with a fixed variance (the InfoGAN
paper's own choice for continuous codes): a learned variance lets Q shrink sigma on easy codes and blow
up the term's gradient next to the hinge loss, and MSE's value reads directly as recovery error.
Q trains on generated images only (real images have no codes), on the same augmented batch D sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, ops

import cgan_contract as contract
from trainer.config import NON_NEGATIVE, knob
from trainer.nets import blocks
from trainer.variants.base import DBatch, Fakes, Recipe, Spec
from trainer.variants.cgan import CGAN

#: Every code's range; training draws uniformly over it, as the seed rule does at serve time.
CODE_RANGE = (-1.0, 1.0)
Q_UNITS = 128


class InfoGAN(CGAN):
    variant = "infogan"

    @dataclass(frozen=True)
    class Extras:
        num_codes: int = knob(2, NON_NEGATIVE)  # continuous style codes fed to G, uniform in CODE_RANGE
        q_weight: float = knob(1.0, NON_NEGATIVE)  # weight of Q's code-recovery MSE in D's and G's objective

    @classmethod
    def recipe_problem(cls, recipe: Recipe, arch: str) -> str | None:
        """CGAN's rules, and at least one code."""
        problem = super().recipe_problem(recipe, arch)
        if problem is None and recipe.num_codes < 1:
            problem = f"infogan needs at least one style code, the recipe has {recipe.num_codes}"
        return problem

    @property
    def num_codes(self) -> int:
        return self.recipe.num_codes

    @property
    def code_ranges(self) -> list[tuple[float, float]]:
        return [CODE_RANGE] * self.num_codes

    def metric_names(self) -> tuple[str, ...]:
        return (*super().metric_names(), "q_loss")

    # --- networks ----------------------------------------------------------------------------------------

    def build_generator(self, spec: Spec, recipe: Recipe) -> keras.Model:
        z, label = blocks.generator_inputs(spec)
        codes = keras.Input((recipe.num_codes,), name="codes")
        embedded = layers.Embedding(spec.num_classes, spec.latent_dim)(label)
        if spec.arch == "dense":
            # CGAN's dense input (label embedding times noise), with the codes beside it.
            joined = layers.Concatenate()([layers.Multiply()([z, embedded]), codes])
            image = blocks.article_mlp(joined, spec.image_shape)
        else:
            joined = layers.Concatenate()([z, embedded, codes])
            image = blocks.dcgan_upsampler(joined, label, spec, recipe)
        return keras.Model([z, label, codes], image, name="generator")

    def build_discriminator(self, spec: Spec, recipe: Recipe) -> keras.Model:
        """``[logit, code estimates]``; with a class head ``[logit, class logits, code estimates]``."""
        image = keras.Input(spec.image_shape, name="image")
        label = keras.Input((), dtype="int32", name="label")
        features, logit = self.discriminator_body(image, label, spec, recipe)
        # Q: one hidden layer on D's body (the paper's), no spectral norm: it is a regressor, like the
        # class head is a plain classifier.
        hidden = layers.LeakyReLU(0.2)(layers.Dense(Q_UNITS, name="q_hidden")(features))
        q_codes = layers.Dense(recipe.num_codes, name="q_codes")(hidden)
        outputs = [layers.Flatten()(logit)]
        if recipe.aux_classifier:
            outputs.append(layers.Dense(spec.num_classes, name="class_logits")(features))
        return keras.Model([image, label], [*outputs, q_codes], name="discriminator")

    # --- training ----------------------------------------------------------------------------------------

    def generator_extras(self, batch) -> tuple:
        """The style codes, uniform over :data:`CODE_RANGE`."""
        low, high = CODE_RANGE
        return (
            keras.random.uniform((batch, self.num_codes), minval=low, maxval=high, seed=self.seed_generator),
        )

    def discriminate(self, images, labels, training=True) -> dict:
        """CGAN's outputs, and Q's ``code_estimates`` [N, k]."""
        out = self.discriminator([images, labels], training=training)
        seen = {"logits": ops.reshape(out[0], (-1,)), "code_estimates": out[-1]}
        if self.recipe.aux_classifier:
            seen["class_logits"] = out[1]
        return seen

    def discriminator_terms(self, seen: dict, batch: DBatch) -> tuple[list, dict]:
        """Q recovers the codes of the fake half, then CGAN's class term."""
        (codes,) = batch.fakes.extras
        q_loss = ops.mean(ops.square(seen["code_estimates"][batch.size :] - codes))
        terms, logs = super().discriminator_terms(seen, batch)
        return [self.recipe.q_weight * q_loss, *terms], logs

    def generator_terms(self, seen: dict, fakes: Fakes) -> tuple[list, dict]:
        """Keep the codes recoverable, then CGAN's class term."""
        (codes,) = fakes.extras
        q_loss = ops.mean(ops.square(seen["code_estimates"] - codes))
        terms, logs = super().generator_terms(seen, fakes)
        return [self.recipe.q_weight * q_loss, *terms], {**logs, "q_loss": q_loss}

    # --- after training ----------------------------------------------------------------------------------

    def style_codes(self) -> list[contract.StyleCode]:
        """The card's codes, named generically until ``cgan-train evaluate`` measures what each controls.
        Q is in the Keras model only (not in the ONNX), so its recovery error is measured here."""
        errors = self.code_recovery_error()
        return [
            contract.StyleCode(name=f"c{j}", low=low, high=high, recovery_error=round(error, 4))
            for j, ((low, high), error) in enumerate(zip(self.code_ranges, errors, strict=True))
        ]

    def code_recovery_error(self, n: int = 2000, seed: int = 0, batch_size: int = 500) -> list[float]:
        """Per code, Q's mean absolute error in code units on ``n`` images of the exported generator.

        Inputs follow the contract (image i: the noise and codes of :func:`cgan_contract.index_seeds`'s seed
        for i, label ``i mod classes``) and the images are rounded to the served uint8 pixels first, so Q
        reads what a user gets.
        """
        spec = self.spec
        errors = np.zeros(self.num_codes)
        for start in range(0, n, batch_size):
            indices = np.arange(start, min(n, start + batch_size))
            seeds = contract.index_seeds(seed, indices)
            z = contract.noise_for_seeds(seeds, spec.latent_dim)
            codes = contract.codes_for_seeds(seeds, spec.latent_dim, self.code_ranges)
            labels = (indices % spec.num_classes).astype(np.int32)
            images = self.export_generator([z, labels, codes], training=False)
            pixels = contract.from_uint8(contract.to_uint8(np.asarray(images)))
            estimate = self.discriminate(pixels, labels, training=False)["code_estimates"]
            errors += np.abs(np.asarray(estimate) - codes).sum(axis=0)
        return [float(e) / n for e in errors]
