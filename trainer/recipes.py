"""Per-dataset defaults: what ``cgan-train train --dataset X`` does when no other flag is given.

``dense`` is always the classic article's recipe (the baseline); ``conv`` is the recipe the measurements
in QUALITY.md support: hinge loss, spectral norm in D (the reparametrised form, :class:`trainer.blocks.
SpectralNorm`), EMA generator, TTUR; for ``cgan`` also class-conditional BatchNorm in G and a projection D
with a real-only class head and a 0.3-weighted class term for G. Translation DiffAugment stays on for the
4,500-digit mnist-5k and is off for the 60,000 Fashion images, where it cost label accuracy and GAN-train.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from trainer.variants.base import Recipe

ARTICLE = Recipe()

MODERN = Recipe(
    loss="hinge",
    g_lr=2e-4,
    d_lr=4e-4,
    beta_1=0.0,
    beta_2=0.9,
    spectral_norm=True,
    augment_shift=2,
    ema_decay=0.999,
)

MODERN_CGAN = replace(MODERN, cond_bn=True, aux_classifier=True, g_class_weight=0.3)


@dataclass(frozen=True)
class Defaults:
    variant: str
    arch: str
    steps: int
    batch_size: int
    latent_dim: int = 100
    #: conv: DiffAugment translation in pixels; 0 for large datasets, where D has enough real images.
    augment_shift: int = 2

    def recipe(self, variant: str, arch: str) -> Recipe:
        if arch == "dense":
            return ARTICLE
        base = MODERN_CGAN if variant == "cgan" else MODERN
        return replace(base, augment_shift=self.augment_shift)


# 16,000 x 64 takes ~12 minutes of training on 2 idle cores (~1,350 images/s for conv; QUALITY.md).
# Full MNIST (60k, not available offline here, so not measured) follows Fashion: same size, no translation.
DATASET_DEFAULTS: dict[str, Defaults] = {
    "mnist-5k": Defaults(variant="cgan", arch="conv", steps=16000, batch_size=64),
    "mnist": Defaults(variant="cgan", arch="conv", steps=16000, batch_size=64, augment_shift=0),
    "fashion-mnist": Defaults(variant="cgan", arch="conv", steps=16000, batch_size=64, augment_shift=0),
    "idx": Defaults(variant="cgan", arch="conv", steps=16000, batch_size=64),
}

#: The article's schedule, for reproducing it: 20,000 steps of batch 32.
ARTICLE_STEPS = 20000
ARTICLE_BATCH = 32


def defaults_for(dataset: str) -> Defaults:
    return DATASET_DEFAULTS.get(dataset, DATASET_DEFAULTS["idx"])
