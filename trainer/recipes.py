"""Per-dataset defaults: what ``cgan-train train --dataset X`` does when no other flag is given.

``dense`` is always the classic article's recipe (the baseline); ``conv`` is the recipe the measurements
in QUALITY.md support: hinge loss, spectral norm in D, translation DiffAugment, EMA generator, TTUR; for
``cgan`` also a projection D with a real-only class head and a light (0.1) class term for G, which lifted
label accuracy from 96.5% to 99.5% on mnist-5k while keeping diversity (AC-GAN's full class term collapses
towards prototypes: GAN-train 79%).
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

MODERN_CGAN = replace(MODERN, aux_classifier=True, g_class_weight=0.1)


@dataclass(frozen=True)
class Defaults:
    variant: str
    arch: str
    steps: int
    batch_size: int
    latent_dim: int = 100
    #: cgan conv: add the class head (helped mnist-5k; on fashion-mnist it cost FID, see QUALITY.md).
    class_head: bool = True

    def recipe(self, variant: str, arch: str) -> Recipe:
        if arch == "dense":
            return ARTICLE
        return MODERN_CGAN if variant == "cgan" and self.class_head else MODERN


# 8,000 x 64 takes ~7 minutes of training on 2 idle cores (BENCHMARKS.md: ~1,300 images/s for conv),
# 18-28 minutes on a shared machine; QUALITY.md measured this schedule.
DATASET_DEFAULTS: dict[str, Defaults] = {
    "mnist-5k": Defaults(variant="cgan", arch="conv", steps=8000, batch_size=64),
    "mnist": Defaults(variant="cgan", arch="conv", steps=8000, batch_size=64),
    "fashion-mnist": Defaults(variant="cgan", arch="conv", steps=8000, batch_size=64, class_head=False),
    "idx": Defaults(variant="cgan", arch="conv", steps=8000, batch_size=64),
}

#: The article's schedule, for reproducing it: 20,000 steps of batch 32.
ARTICLE_STEPS = 20000
ARTICLE_BATCH = 32


def defaults_for(dataset: str) -> Defaults:
    return DATASET_DEFAULTS.get(dataset, DATASET_DEFAULTS["idx"])
