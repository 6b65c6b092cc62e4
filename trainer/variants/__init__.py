"""GAN variants, one module each: a :class:`~trainer.variants.base.ConditionalGAN` subclass that fills the
hooks of the one training step (:mod:`trainer.variants.base`) and says its default recipe, the recipes it
refuses and its own knobs (``Extras``).

The names live here, without Keras, so the command line can offer them while ``--help`` stays TF-free;
:func:`variant_class` imports a variant's module only when one is used. Adding a variant: a module with a
:class:`~trainer.variants.base.ConditionalGAN` subclass, and one line in :data:`VARIANTS`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainer.config import Recipe
    from trainer.variants.base import ConditionalGAN

#: Variant name -> (module, class).
VARIANTS: dict[str, tuple[str, str]] = {
    "cgan": ("trainer.variants.cgan", "CGAN"),
    "acgan": ("trainer.variants.acgan", "ACGAN"),
    "infogan": ("trainer.variants.infogan", "InfoGAN"),
    "ebgan": ("trainer.variants.ebgan", "EBGAN"),
}


@dataclass(frozen=True)
class Spec:
    """Sizes that come from the dataset and the command line, never from constants in a variant."""

    latent_dim: int
    num_classes: int
    image_shape: tuple[int, int, int]
    arch: str


def variant_class(variant: str) -> type[ConditionalGAN]:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(sorted(VARIANTS))}")
    module, cls = VARIANTS[variant]
    return getattr(importlib.import_module(module), cls)


def build(variant: str, spec: Spec, recipe: Recipe, seed: int = 0) -> ConditionalGAN:
    return variant_class(variant)(spec, recipe, seed=seed)
