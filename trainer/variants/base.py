"""What every conditional-GAN variant shares: sizes, sampling, augmentation, EMA, metrics, optimiser set-up.

A variant subclasses :class:`ConditionalGAN`, builds its networks for an ``arch`` and writes ``train_step``.
Generators map ``[z float32 [N, latent_dim], label int [N]]`` to images in [-1, 1] (tanh), NHWC.
Discriminators return logits (``sigmoid(logit)`` = P(real)); AC-GAN's also returns class logits.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import keras
from keras import ops

from trainer.config import Recipe, Spec
from trainer.nets import losses, optimizers
from trainer.nets.augment import diff_augment


class ConditionalGAN(keras.Model):
    """A generator and a discriminator trained together; subclasses define the networks and ``train_step``."""

    variant: ClassVar[str]
    archs: ClassVar[tuple[str, ...]] = ("dense", "conv")

    def __init__(self, spec: Spec, recipe: Recipe, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if spec.arch not in self.archs:
            raise ValueError(
                f"{self.variant} has no arch {spec.arch!r}; choose one of {', '.join(self.archs)}"
            )
        self.spec = spec
        self.recipe = recipe
        self.generator = self.build_generator(spec, recipe)
        self.discriminator = self.build_discriminator(spec, recipe)
        self.ema_generator = None
        if recipe.ema_decay > 0:
            # Float32 whatever the training arithmetic: this is the generator that is sampled and exported.
            self.ema_generator = self.build_generator(spec, replace(recipe, compute_dtype="float32"))
            self.ema_generator.set_weights(self.generator.get_weights())
        self.seed_generator = keras.random.SeedGenerator(seed)
        # LeCam's anchors: running means of D's real and fake logits, checkpointed with the run.
        self.lecam_anchors = None
        if recipe.lecam_weight > 0:
            self.lecam_anchors = keras.Variable([0.0, 0.0], trainable=False, name="lecam_anchors")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.metric_names()}

    # --- to be provided by a variant ---------------------------------------------------------------------

    def build_generator(self, spec: Spec, recipe: Recipe) -> keras.Model:
        raise NotImplementedError

    def build_discriminator(self, spec: Spec, recipe: Recipe) -> keras.Model:
        raise NotImplementedError

    def metric_names(self) -> tuple[str, ...]:
        return ("d_loss", "g_loss", "d_real_acc", "d_fake_acc")

    # --- shared machinery --------------------------------------------------------------------------------

    def compile(self, **kwargs):
        super().compile(**kwargs)
        r = self.recipe
        self.d_optimizer = optimizers.Adam(r.d_lr, beta_1=r.beta_1, beta_2=r.beta_2)
        self.g_optimizer = optimizers.Adam(r.g_lr, beta_1=r.beta_1, beta_2=r.beta_2)
        # Built now so a checkpoint can be restored before the first step.
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_loss_fn = losses.DISCRIMINATOR_LOSSES[r.loss]
        self.g_loss_fn = losses.GENERATOR_LOSSES[r.loss]

    def d_adversarial_loss(self, real_logits, fake_logits):
        if self.recipe.loss == "bce":
            loss = self.d_loss_fn(real_logits, fake_logits, self.recipe.real_target)
        else:
            loss = self.d_loss_fn(real_logits, fake_logits)
        if self.lecam_anchors is not None:
            loss += self.recipe.lecam_weight * self.lecam_term(real_logits, fake_logits)
        return loss

    def lecam_term(self, real_logits, fake_logits):
        """Tseng et al. 2021: pull D's logits towards the other side's running mean, so that on a small
        data set D cannot drive its real and fake scores apart without bound (it overfits the real set).

        Moves the anchors by this batch's means, so it runs once per D step (``d_adversarial_loss``)."""
        decay = self.recipe.lecam_decay
        batch_means = ops.stop_gradient(ops.stack([ops.mean(real_logits), ops.mean(fake_logits)]))
        self.lecam_anchors.assign(decay * self.lecam_anchors + (1.0 - decay) * batch_means)
        # Bias-corrected like Adam's moments, so the first steps do not anchor on the zeros it starts from.
        steps = ops.cast(self.d_optimizer.iterations + 1, "float32")
        real_anchor, fake_anchor = ops.unstack(self.lecam_anchors / (1.0 - decay**steps))
        return losses.lecam_regulariser(real_logits, fake_logits, real_anchor, fake_anchor)

    @property
    def metrics(self):
        # Listed here so fit()/our loop can reset them between epochs.
        return list(self.trackers.values())

    @property
    def step(self):
        return self.g_optimizer.iterations

    @property
    def export_generator(self) -> keras.Model:
        """The generator to ship: the EMA copy when the recipe keeps one."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    def sample_inputs(self, batch):
        z = keras.random.normal((batch, self.spec.latent_dim), seed=self.seed_generator)
        labels = keras.random.randint((batch,), 0, self.spec.num_classes, seed=self.seed_generator)
        return z, labels

    def augment(self, images):
        r = self.recipe
        if r.augment_shift == 0 and r.augment_cutout == 0:
            return images
        return diff_augment(images, self.seed_generator, r.augment_shift, r.augment_cutout)

    def update_ema(self):
        if self.ema_generator is None:
            return
        decay = self.recipe.ema_decay
        for ema_w, w in zip(self.ema_generator.weights, self.generator.weights, strict=True):
            if w.trainable:
                ema_w.assign(decay * ema_w + (1.0 - decay) * w)
            else:  # BatchNorm moving statistics follow the live generator
                ema_w.assign(w)

    def apply(self, optimizer, tape, loss, variables):
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))

    def record(self, **values):
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def checkpoint_variables(self) -> list:
        """Every variable a resumed run needs, in a fixed order."""
        found = [
            *self.generator.weights,
            *self.discriminator.weights,
            *(self.ema_generator.weights if self.ema_generator is not None else []),
            *self.d_optimizer.variables,
            *self.g_optimizer.variables,
            self.seed_generator.state,
            *([self.lecam_anchors] if self.lecam_anchors is not None else []),
        ]
        return found


def accuracy_real(logits):
    return ops.mean(ops.cast(logits > 0, "float32"))


def accuracy_fake(logits):
    return ops.mean(ops.cast(logits < 0, "float32"))


def class_accuracy(labels, class_logits):
    predicted = ops.cast(ops.argmax(class_logits, axis=-1), "int32")
    return ops.mean(ops.cast(predicted == labels, "float32"))
