"""GAN variants, one module each. Importing this package registers them all in :data:`VARIANTS`."""

from trainer.variants import acgan, cgan  # noqa: F401  (registration side effect)
from trainer.variants.base import ConditionalGAN, Recipe, Spec
from trainer.variants.registry import VARIANTS


def build(variant: str, spec: Spec, recipe: Recipe, seed: int = 0) -> ConditionalGAN:
    if variant not in VARIANTS:
        raise ValueError(f"unknown model {variant!r}; choose one of {', '.join(sorted(VARIANTS))}")
    return VARIANTS[variant](spec, recipe, seed=seed)


__all__ = ["VARIANTS", "ConditionalGAN", "Recipe", "Spec", "build"]
