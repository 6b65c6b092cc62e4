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

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

import cgan_contract as contract
from trainer.nets import blocks, losses
from trainer.variants.base import Recipe, Spec, accuracy_fake, accuracy_real
from trainer.variants.cgan import CGAN, class_metrics

#: Every code's range; training draws uniformly over it, as the seed rule does at serve time.
CODE_RANGE = (-1.0, 1.0)
Q_UNITS = 128


class InfoGAN(CGAN):
    variant = "infogan"

    def __init__(self, spec: Spec, recipe: Recipe, seed: int = 0, **kwargs):
        if recipe.num_codes < 1:
            raise ValueError(f"infogan needs at least one style code, the recipe has {recipe.num_codes}")
        super().__init__(spec, recipe, seed=seed, **kwargs)

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

    def sample_codes(self, batch):
        low, high = CODE_RANGE
        return keras.random.uniform(
            (batch, self.num_codes), minval=low, maxval=high, seed=self.seed_generator
        )

    def _discriminate(self, images, labels, training=True):
        """(logits [N], class logits or None, code estimates [N, k])."""
        out = self.discriminator([images, labels], training=training)
        class_logits = out[1] if self.recipe.aux_classifier else None
        return ops.reshape(out[0], (-1,)), class_logits, out[-1]

    def train_step(self, data):
        real_images, real_labels = data
        real_labels = ops.cast(real_labels, "int32")
        batch = ops.shape(real_images)[0]
        recipe = self.recipe

        # D (with Q): real/fake on both halves, class on real images, codes on fakes.
        z, fake_labels = self.sample_inputs(batch)
        codes = self.sample_codes(batch)
        fake_images = self.generator([z, fake_labels, codes], training=True)
        images = self.augment(ops.concatenate([real_images, fake_images], axis=0))
        labels = ops.concatenate([real_labels, fake_labels], axis=0)
        with tf.GradientTape() as tape:
            logits, class_logits, q_codes = self._discriminate(images, labels)
            real_logits, fake_logits = logits[:batch], logits[batch:]
            d_loss = self.d_adversarial_loss(real_logits, fake_logits)
            d_loss += recipe.q_weight * ops.mean(ops.square(q_codes[batch:] - codes))
            if class_logits is not None:
                real_class_logits = class_logits[:batch]
                d_loss += recipe.class_weight * losses.auxiliary_class_loss(real_labels, real_class_logits)
        self.apply(self.d_optimizer, tape, d_loss, self.discriminator.trainable_variables)

        # G: look real, keep the codes recoverable, and (with a class head) look like the label.
        z, fake_labels = self.sample_inputs(batch)
        codes = self.sample_codes(batch)
        with tf.GradientTape() as tape:
            generated = self.augment(self.generator([z, fake_labels, codes], training=True))
            g_logits, g_class_logits, g_q_codes = self._discriminate(generated, fake_labels)
            q_loss = ops.mean(ops.square(g_q_codes - codes))
            g_loss = self.g_loss_fn(g_logits) + recipe.q_weight * q_loss
            if g_class_logits is not None:
                g_loss += recipe.g_class_weight * losses.auxiliary_class_loss(fake_labels, g_class_logits)
        self.apply(self.g_optimizer, tape, g_loss, self.generator.trainable_variables)

        self.update_ema()
        values = dict(
            d_loss=d_loss,
            g_loss=g_loss,
            d_real_acc=accuracy_real(real_logits),
            d_fake_acc=accuracy_fake(fake_logits),
            q_loss=q_loss,
        )
        if class_logits is not None:
            values.update(class_metrics(real_labels, real_class_logits, fake_labels, g_class_logits))
        return self.record(**values)

    # --- after training ----------------------------------------------------------------------------------

    def code_recovery_error(self, n: int = 2000, seed: int = 0, batch_size: int = 500) -> list[float]:
        """Per code, Q's mean absolute error in code units on ``n`` images of the exported generator.

        Inputs follow the contract (image i: seed ``seed + i``'s noise and codes, label ``i mod classes``)
        and the images are rounded to the served uint8 pixels first, so Q reads what a user gets.
        """
        spec = self.spec
        errors = np.zeros(self.num_codes)
        for start in range(0, n, batch_size):
            seeds = np.arange(seed + start, seed + min(n, start + batch_size), dtype=np.uint64)
            z = contract.noise_for_seeds(seeds, spec.latent_dim)
            codes = contract.codes_for_seeds(seeds, spec.latent_dim, self.code_ranges)
            labels = (np.arange(start, start + len(seeds)) % spec.num_classes).astype(np.int32)
            images = self.export_generator([z, labels, codes], training=False)
            pixels = contract.from_uint8(contract.to_uint8(np.asarray(images)))
            _, _, estimate = self._discriminate(pixels, labels, training=False)
            errors += np.abs(np.asarray(estimate) - codes).sum(axis=0)
        return [float(e) / n for e in errors]
