"""Pure GAN loss functions, named ``<kind>_generator_loss`` / ``<kind>_discriminator_loss``.

Classifier discriminators output unbounded logits; ``sigmoid(logit)`` is the probability that an image is
real. EBGAN's discriminator is an autoencoder and its losses take energies (per-image reconstruction error).
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


def lecam_regulariser(real_logits, fake_logits, real_anchor, fake_anchor):
    """LeCam (Tseng et al. 2021): ``mean(relu(D(x) - a_fake)^2) + mean(relu(a_real - D(G(z)))^2)``.

    0 while every real logit is at most the fake anchor and every fake logit at least the real anchor;
    otherwise it grows with the square of how far D has pushed them past those anchors.
    """
    return ops.mean(ops.square(ops.relu(real_logits - fake_anchor))) + ops.mean(
        ops.square(ops.relu(real_anchor - fake_logits))
    )


def mode_seeking_term(images_a, images_b, z_a, z_b, eps: float = 1e-5):
    """MSGAN's mode-seeking regulariser (Mao et al. 2019), to minimise: ``1 / (d_I / d_z + eps)`` with
    ``d_I`` the mean absolute difference of two images of the same label and ``d_z`` that of their noises,
    averaged over the pairs. It is large when different noises give near-identical images (a collapsed
    mode) and small when the generator spreads them apart; ``eps`` bounds it for identical pairs."""
    n = ops.shape(images_a)[0]
    images_a, images_b = ops.cast(images_a, "float32"), ops.cast(images_b, "float32")  # bf16 compute
    d_image = ops.mean(ops.abs(ops.reshape(images_a - images_b, (n, -1))), axis=-1)
    d_z = ops.mean(ops.abs(ops.reshape(z_a - z_b, (n, -1))), axis=-1)
    return ops.mean(1.0 / (d_image / d_z + eps))


def ebgan_energy(images, reconstructions):
    """Per-image mean squared reconstruction error ``[N]``; images in [-1, 1], so each energy is in [0, 4]."""
    return ops.mean(ops.reshape(ops.square(images - reconstructions), (ops.shape(images)[0], -1)), axis=-1)


def ebgan_discriminator_loss(real_energy, fake_energy, margin: float):
    """Zhao et al. 2016: ``E(real) + max(0, margin - E(fake))``, per image, averaged.

    A fake whose energy is already at least ``margin`` costs D nothing, so D spends no capacity pushing
    fakes further up.
    """
    return ops.mean(real_energy) + ebgan_margin_loss(fake_energy, margin)


def ebgan_margin_loss(energy, margin: float):
    """``max(0, margin - E)`` averaged: what D pays for a negative it reconstructs too well."""
    return ops.mean(ops.relu(margin - energy))


def ebgan_generator_loss(fake_energy):
    """G wants its images reconstructed well, i.e. low energy."""
    return ops.mean(fake_energy)


def ebgan_pulling_away_term(codes):
    """Zhao et al. 2016's PT: mean squared cosine similarity over the distinct pairs of a batch's codes.

    In [0, 1]: 0 when the codes are mutually orthogonal, 1 when they are all parallel (a collapsed batch).
    A zero code counts as orthogonal to everything; a batch of one has no pairs and gives 0.
    """
    codes = ops.reshape(codes, (ops.shape(codes)[0], -1))
    norms = ops.sqrt(ops.sum(ops.square(codes), axis=-1, keepdims=True))
    unit = codes / ops.maximum(norms, 1e-12)
    squared = ops.square(ops.matmul(unit, ops.transpose(unit)))
    n = ops.cast(ops.shape(codes)[0], squared.dtype)
    off_diagonal = ops.sum(squared) - ops.sum(ops.diagonal(squared))
    return off_diagonal / ops.maximum(n * (n - 1.0), 1.0)


#: The adversarial losses of a discriminator that scores logits, by ``recipe.loss``.
DISCRIMINATOR_LOSSES = {
    "bce": minimax_discriminator_loss,
    "hinge": hinge_discriminator_loss,
}
GENERATOR_LOSSES = {
    "bce": non_saturating_generator_loss,
    "hinge": hinge_generator_loss,
}
