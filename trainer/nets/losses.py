"""Pure GAN loss functions on logits, named ``<kind>_generator_loss`` / ``<kind>_discriminator_loss``.

Discriminators here output unbounded logits; ``sigmoid(logit)`` is the probability that an image is real.
"""

from __future__ import annotations

from keras import ops


def _bce(targets, logits):
    # Numerically stable sigmoid cross-entropy: max(x, 0) - x * t + log(1 + exp(-|x|)).
    return ops.mean(ops.relu(logits) - logits * targets + ops.log1p(ops.exp(-ops.abs(logits))))


def minimax_discriminator_loss(real_logits, fake_logits, real_target: float = 1.0):
    """BCE on real (target ``real_target``; < 1 is one-sided label smoothing) and fake (target 0)."""
    return _bce(ops.full_like(real_logits, real_target), real_logits) + _bce(
        ops.zeros_like(fake_logits), fake_logits
    )


def non_saturating_generator_loss(fake_logits):
    """-log D(G(z)): the generator wants its images called real."""
    return _bce(ops.ones_like(fake_logits), fake_logits)


def hinge_discriminator_loss(real_logits, fake_logits):
    return ops.mean(ops.relu(1.0 - real_logits)) + ops.mean(ops.relu(1.0 + fake_logits))


def hinge_generator_loss(fake_logits):
    return -ops.mean(fake_logits)


def auxiliary_class_loss(labels, class_logits):
    """AC-GAN's class term: sparse categorical cross-entropy on integer labels (no one-hot)."""
    return ops.mean(ops.sparse_categorical_crossentropy(labels, class_logits, from_logits=True))


DISCRIMINATOR_LOSSES = {"bce": minimax_discriminator_loss, "hinge": hinge_discriminator_loss}
GENERATOR_LOSSES = {"bce": non_saturating_generator_loss, "hinge": hinge_generator_loss}
