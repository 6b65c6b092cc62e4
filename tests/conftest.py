"""Session fixtures shared by trainer and service tests."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _train_tiny(root, name: str, variant: str, recipe):
    """Train ``name`` (dense, 3 steps of 16) into ``root/models`` and return that MODELS_DIR."""
    from trainer.config import TrainConfig
    from trainer.train import train

    config = TrainConfig(
        variant=variant,
        arch="dense",
        dataset="mnist-5k",
        steps=3,
        batch_size=16,
        latent_dim=16,
        recipe=recipe,
        name=name,
        out=root / "models",
        work_dir=root / "runs",
        jit_compile=False,
        progress=False,
    )
    result = train(config)
    assert result.model_dir == root / "models" / name / "1"
    return root / "models"


@pytest.fixture(scope="session")
def exported_model_dir(tmp_path_factory):
    """A MODELS_DIR holding a real model, ``tiny``, trained for a few steps by the trainer and exported.

    The service tests use it to prove they serve what the trainer writes, not only hand-built graphs.
    """
    from trainer.config import Recipe

    return _train_tiny(tmp_path_factory.mktemp("exported"), "tiny", "cgan", Recipe())


@pytest.fixture(scope="session")
def exported_infogan_dir(tmp_path_factory):
    """A MODELS_DIR holding ``tiny-info``: an InfoGAN (dense, two style codes) trained a few steps and
    exported, so tests can serve and evaluate a real generator with a ``codes`` input."""
    import dataclasses

    from trainer.config import recipe_for

    recipe = dataclasses.replace(recipe_for("infogan", "dense"), num_codes=2)
    return _train_tiny(tmp_path_factory.mktemp("exported-infogan"), "tiny-info", "infogan", recipe)
