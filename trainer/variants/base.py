"""What every conditional-GAN variant shares: the one training step, sampling, augmentation, EMA, metrics,
optimiser set-up, and the rules a recipe must follow.

A variant's rules are class attributes, read without building anything: ``Extras`` (a frozen dataclass of
its own recipe knobs, e.g. InfoGAN's ``num_codes``), ``archs`` and ``loss_kinds`` (what it trains with),
:meth:`~ConditionalGAN.default_recipe` and :meth:`~ConditionalGAN.recipe_problem`.

:meth:`ConditionalGAN.train_step` is the template every variant trains with (sample -> generate -> augment
-> D step -> G step -> EMA -> record); a variant fills in its hooks:

* its networks: :meth:`~ConditionalGAN.build_generator`, :meth:`~ConditionalGAN.build_discriminator`;
* :meth:`~ConditionalGAN.generator_extras`: G's inputs besides noise and label (InfoGAN's style codes);
* :meth:`~ConditionalGAN.discriminate`: D's outputs on a batch, by name (``logits``, ``class_logits`` ...);
* :meth:`~ConditionalGAN.discriminator_batch`: rows D sees besides the real and fake halves (EBGAN's);
* :meth:`~ConditionalGAN.d_adversarial` / :meth:`~ConditionalGAN.g_adversarial`: the adversarial loss
  (logits and ``recipe.loss`` with LeCam here; EBGAN's energies);
* :meth:`~ConditionalGAN.discriminator_terms` / :meth:`~ConditionalGAN.generator_terms`: extra weighted
  loss terms, added in order, and the history columns they bring;
* :meth:`~ConditionalGAN.metric_names`: the history's columns;
* :attr:`~ConditionalGAN.code_ranges` and :meth:`~ConditionalGAN.style_codes`: style codes (none here).

Generators map ``[z float32 [N, latent_dim], label int [N], *extras]`` to images in [-1, 1] (tanh), NHWC.
Logit discriminators return logits (``sigmoid(logit)`` = P(real)).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar, NamedTuple

import keras
import tensorflow as tf
from keras import ops

import cgan_contract as contract
from trainer.config import ARTICLE, MODERN, NoExtras, Recipe, knob_problem
from trainer.nets import losses, optimizers
from trainer.nets.augment import diff_augment
from trainer.variants import Spec


class Fakes(NamedTuple):
    """One draw of G's inputs: noise, labels, and the variant's extra inputs (InfoGAN's codes)."""

    z: Any
    labels: Any
    extras: tuple = ()

    @property
    def inputs(self) -> list:
        return [self.z, self.labels, *self.extras]


class DBatch(NamedTuple):
    """What D's step knows besides D's outputs: rows ``[:size]`` are real, ``[size:2*size]`` are G's."""

    size: Any
    real_labels: Any
    labels: Any  # every row's label, real first
    fakes: Fakes


class ConditionalGAN(keras.Model):
    """A generator and a discriminator trained together by one template step; subclasses fill its hooks."""

    variant: ClassVar[str]
    archs: ClassVar[tuple[str, ...]] = ("dense", "conv")
    #: Adversarial losses (``recipe.loss``) its D trains with: these score logits.
    loss_kinds: ClassVar[tuple[str, ...]] = tuple(losses.DISCRIMINATOR_LOSSES)
    #: Its own recipe knobs (``recipe.extras``): a frozen dataclass, with :func:`trainer.config.knob` rules.
    Extras: ClassVar[type] = NoExtras

    def __init__(self, spec: Spec, recipe: Recipe, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        recipe = self.complete(recipe)
        problem = self.recipe_problem(recipe, spec.arch)
        if problem:
            raise ValueError(problem)
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
        names = (*self.metric_names(), *(("mode_seeking",) if recipe.mode_seeking > 0 else ()))
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}

    # --- its rules: the recipe --------------------------------------------------------------------------

    @classmethod
    def default_recipe(cls, arch: str) -> Recipe:
        """The article's recipe for dense, :data:`~trainer.config.MODERN` for conv, and its own knobs."""
        return replace(ARTICLE if arch == "dense" else MODERN, extras=cls.Extras())

    @classmethod
    def complete(cls, recipe: Recipe) -> Recipe:
        """``recipe`` with this variant's knobs at their defaults where it gives none."""
        return replace(recipe, extras=cls.Extras()) if type(recipe.extras) is NoExtras else recipe

    @classmethod
    def recipe_problem(cls, recipe: Recipe, arch: str) -> str | None:
        """Why this variant cannot train ``recipe`` for ``arch``, or None: its arch, its knobs, its loss,
        each knob's range. A variant with rules of its own checks them after these."""
        if arch not in cls.archs:
            return f"{cls.variant} has no arch {arch!r}; choose one of {', '.join(cls.archs)}"
        if type(recipe.extras) is not cls.Extras:
            return f"the recipe's own knobs ({type(recipe.extras).__qualname__}) are not {cls.variant}'s"
        if recipe.loss not in cls.loss_kinds:
            return f"loss must be one of {', '.join(cls.loss_kinds)} for {cls.variant}, got {recipe.loss!r}"
        return knob_problem(recipe, arch)

    # --- the training step ---------------------------------------------------------------------------------

    def train_step(self, data):
        real_images, real_labels = data
        real_labels = ops.cast(real_labels, "int32")
        size = ops.shape(real_images)[0]

        # Train the discriminator on real and fake images in one pass.
        fakes = self.sample_fakes(size)
        fake_images = self.generator(fakes.inputs, training=True)
        images = self.augment(ops.concatenate([real_images, fake_images], axis=0))
        labels = ops.concatenate([real_labels, fakes.labels], axis=0)
        images, labels = self.discriminator_batch(images, labels, real_labels)
        batch = DBatch(size, real_labels, labels, fakes)
        with tf.GradientTape() as tape:
            seen = self.discriminate(images, labels)
            d_loss, d_logs = self.d_adversarial(seen, size)
            d_loss, d_logs = _add(d_loss, d_logs, *self.discriminator_terms(seen, batch))
        self.apply(self.d_optimizer, tape, d_loss, self.discriminator.trainable_variables)

        # Train the generator to make D call its images real (and whatever its terms ask).
        fakes = self.sample_fakes(size) if self.recipe.mode_seeking == 0 else self.paired_fakes(size)
        with tf.GradientTape() as tape:
            made = self.generator(fakes.inputs, training=True)
            seen = self.discriminate(self.augment(made), fakes.labels)
            g_loss, g_logs = _add(self.g_adversarial(seen), {}, *self.generator_terms(seen, fakes))
            g_loss, g_logs = _add(g_loss, g_logs, *self.mode_seeking_terms(made, fakes))
        self.apply(self.g_optimizer, tape, g_loss, self.generator.trainable_variables)

        self.update_ema()
        return self.record(d_loss=d_loss, g_loss=g_loss, **d_logs, **g_logs)

    # --- hooks: a variant's networks, inputs, outputs and loss terms ---------------------------------------

    def build_generator(self, spec: Spec, recipe: Recipe) -> keras.Model:
        raise NotImplementedError

    def build_discriminator(self, spec: Spec, recipe: Recipe) -> keras.Model:
        raise NotImplementedError

    def generator_extras(self, batch) -> tuple:
        """G's inputs after noise and label, drawn afresh each step (none here)."""
        return ()

    def discriminator_batch(self, images, labels, real_labels):
        """(images, labels) D trains on: the augmented real and fake halves here."""
        return images, labels

    def discriminate(self, images, labels, training=True) -> dict:
        """D's outputs by name: here ``logits`` [N] of a D that takes ``[image, label]``."""
        return {"logits": ops.reshape(self.discriminator([images, labels], training=training), (-1,))}

    def d_adversarial(self, seen: dict, size) -> tuple[Any, dict]:
        """D's adversarial loss on its logits (real first) and its accuracies for the history."""
        real_logits, fake_logits = seen["logits"][:size], seen["logits"][size:]
        loss = self.d_adversarial_loss(real_logits, fake_logits)
        return loss, {"d_real_acc": accuracy_real(real_logits), "d_fake_acc": accuracy_fake(fake_logits)}

    def g_adversarial(self, seen: dict):
        return losses.GENERATOR_LOSSES[self.recipe.loss](seen["logits"])

    def discriminator_terms(self, seen: dict, batch: DBatch) -> tuple[list, dict]:
        """D's extra loss terms, each already weighted, and their history columns (none here)."""
        return [], {}

    def generator_terms(self, seen: dict, fakes: Fakes) -> tuple[list, dict]:
        """G's extra loss terms, each already weighted, and their history columns (none here)."""
        return [], {}

    def metric_names(self) -> tuple[str, ...]:
        return ("d_loss", "g_loss", "d_real_acc", "d_fake_acc")

    @property
    def code_ranges(self) -> list[tuple[float, float]]:
        """Each style code's range, in G's ``codes`` input order (none here)."""
        return []

    def style_codes(self) -> list[contract.StyleCode]:
        """The card's codes (none here): named generically until ``cgan-train evaluate`` measures them."""
        return []

    # --- shared machinery --------------------------------------------------------------------------------

    def compile(self, **kwargs):
        super().compile(**kwargs)
        r = self.recipe
        self.d_optimizer = optimizers.Adam(r.d_lr, beta_1=r.beta_1, beta_2=r.beta_2)
        self.g_optimizer = optimizers.Adam(r.g_lr, beta_1=r.beta_1, beta_2=r.beta_2)
        # Built now so a checkpoint can be restored before the first step.
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    def d_adversarial_loss(self, real_logits, fake_logits):
        d_loss_fn = losses.DISCRIMINATOR_LOSSES[self.recipe.loss]
        if self.recipe.loss == "bce":
            loss = d_loss_fn(real_logits, fake_logits, self.recipe.real_target)
        else:
            loss = d_loss_fn(real_logits, fake_logits)
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

    def sample_fakes(self, batch) -> Fakes:
        z, labels = self.sample_inputs(batch)
        return Fakes(z, labels, self.generator_extras(batch))

    def paired_fakes(self, batch) -> Fakes:
        """A draw whose second half repeats the first half's labels and extras with fresh noise: row ``i``
        and row ``half + i`` are one label's two samples, what the mode-seeking term compares."""
        fakes = self.sample_fakes(batch)
        half = batch // 2

        def paired(x):
            return ops.concatenate([x[:half], x[: batch - half]], axis=0)

        return Fakes(fakes.z, paired(fakes.labels), tuple(paired(e) for e in fakes.extras))

    def mode_seeking_terms(self, made, fakes: Fakes) -> tuple[list, dict]:
        """MSGAN's term on :meth:`paired_fakes`' pairs, weighted (none when the recipe's weight is 0)."""
        weight = self.recipe.mode_seeking
        if weight == 0:
            return [], {}
        half = ops.shape(made)[0] // 2
        pair = slice(half, 2 * half)
        term = losses.mode_seeking_term(made[:half], made[pair], fakes.z[:half], fakes.z[pair])
        return [weight * term], {"mode_seeking": term}

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


def _add(loss, logs: dict, terms: list, term_logs: dict):
    """``loss`` plus each term in order, and the logs of both."""
    for term in terms:
        loss += term
    return loss, {**logs, **term_logs}


def accuracy_real(logits):
    return ops.mean(ops.cast(logits > 0, "float32"))


def accuracy_fake(logits):
    return ops.mean(ops.cast(logits < 0, "float32"))


def class_accuracy(labels, class_logits):
    predicted = ops.cast(ops.argmax(class_logits, axis=-1), "int32")
    return ops.mean(ops.cast(predicted == labels, "float32"))
