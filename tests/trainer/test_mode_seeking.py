"""MSGAN's mode-seeking term (Mao et al. 2019): the loss, the paired draw it needs, and the recipe knob."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from trainer import variants
from trainer.config import MODERN, ConfigError, TrainConfig, override_recipe
from trainer.nets import losses


def test_the_term_is_the_mean_inverse_distance_ratio():
    a = np.zeros((2, 2, 2, 1), "float32")
    b = np.stack([np.full((2, 2, 1), 0.5), np.full((2, 2, 1), 2.0)]).astype("float32")
    z_a = np.zeros((2, 4), "float32")
    z_b = np.ones((2, 4), "float32")
    # Pair 0: image distance 0.5, noise distance 1 -> 1/0.5; pair 1: 2/1 -> 1/2.
    got = float(losses.mode_seeking_term(a, b, z_a, z_b, eps=0.0))
    assert got == pytest.approx((2.0 + 0.5) / 2)


def test_identical_images_from_different_noise_cost_the_most():
    images = np.random.default_rng(0).uniform(-1, 1, (4, 28, 28, 1)).astype("float32")
    z_a, z_b = np.zeros((4, 8), "float32"), np.ones((4, 8), "float32")
    collapsed = float(losses.mode_seeking_term(images, images, z_a, z_b))
    spread = float(losses.mode_seeking_term(images, -images, z_a, z_b))
    assert collapsed == pytest.approx(1e5)
    assert spread < 10


def _gan(weight: float, variant: str = "cgan"):
    spec = variants.Spec(latent_dim=8, num_classes=3, image_shape=(28, 28, 1), arch="dense")
    recipe = dataclasses.replace(variants.variant_class(variant).default_recipe("dense"), mode_seeking=weight)
    gan = variants.build(variant, spec, recipe, seed=3)
    gan.compile()
    return gan


def test_paired_fakes_share_label_and_extras_but_not_noise():
    gan = _gan(1.0, "infogan")
    fakes = gan.paired_fakes(7)
    labels = fakes.labels.numpy()
    np.testing.assert_array_equal(labels[3:6], labels[:3])
    assert labels.shape == (7,)
    for extra in fakes.extras:
        np.testing.assert_array_equal(np.asarray(extra)[3:6], np.asarray(extra)[:3])
    z = fakes.z.numpy()
    assert not np.allclose(z[3:6], z[:3])


@pytest.mark.parametrize("variant", ["cgan", "ebgan"])
def test_a_train_step_with_the_term_logs_it_and_one_without_has_no_column(variant):
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (8, 28, 28, 1)), "float32")
    labels = tf.constant([0, 1, 2, 0, 1, 2, 0, 1])
    logs = _gan(2.0, variant).train_step((images, labels))
    assert np.isfinite(float(logs["mode_seeking"])) and float(logs["mode_seeking"]) > 0
    assert "mode_seeking" not in _gan(0.0, variant).train_step((images, labels))


def test_the_knob_is_set_from_the_command_line_and_refuses_a_negative_weight():
    assert override_recipe(MODERN, ["mode_seeking=0.5"]).mode_seeking == 0.5
    config = TrainConfig.for_dataset("mnist-5k")
    config = dataclasses.replace(config, recipe=dataclasses.replace(config.recipe, mode_seeking=-1.0))
    with pytest.raises(ConfigError, match="mode_seeking must be >= 0, got -1.0"):
        config.validate()
