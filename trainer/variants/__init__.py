"""GAN variants, one module each: a :class:`~trainer.variants.base.ConditionalGAN` subclass that fills the
hooks of the one training step (:mod:`trainer.variants.base`).

The names live here, without Keras, so the command line can offer them while ``--help`` stays TF-free;
:func:`build` imports a variant's module only when one is built. Adding a variant: a module with a
:class:`~trainer.variants.base.ConditionalGAN` subclass, and one line in :data:`VARIANTS`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from trainer.config import Recipe, Spec

if TYPE_CHECKING:
    from trainer.variants.base import ConditionalGAN

#: Variant name -> (module, class).
VARIANTS: dict[str, tuple[str, str]] = {
    "cgan": ("trainer.variants.cgan", "CGAN"),
    "acgan": ("trainer.variants.acgan", "ACGAN"),
    "infogan": ("trainer.variants.infogan", "InfoGAN"),
    "ebgan": ("trainer.variants.ebgan", "EBGAN"),
}


def variant_class(variant: str) -> type[ConditionalGAN]:
    if variant not in VARIANTS:
        raise ValueError(f"unknown model {variant!r}; choose one of {', '.join(sorted(VARIANTS))}")
    module, cls = VARIANTS[variant]
    return getattr(importlib.import_module(module), cls)


def build(variant: str, spec: Spec, recipe: Recipe, seed: int = 0) -> ConditionalGAN:
    return variant_class(variant)(spec, recipe, seed=seed)


__all__ = ["VARIANTS", "Recipe", "Spec", "build", "variant_class"]
