"""LeCam regulariser (Tseng et al. 2021) and the ``--recipe FIELD=VALUE`` override that turns it on."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from trainer import variants
from trainer.config import MODERN, ConfigError, TrainConfig, override_recipe
from trainer.nets import losses


def test_lecam_is_zero_inside_the_anchors_and_quadratic_past_them():
    inside = losses.lecam_regulariser(
        np.array([-1.0, 0.0], "float32"), np.array([2.0, 3.0], "float32"), real_anchor=1.0, fake_anchor=0.5
    )
    assert float(inside) == 0.0
    # real logits 2 and 0 against fake anchor 0.5: (1.5^2 + 0) / 2; fake logit -1 against real anchor 1: 2^2.
    past = losses.lecam_regulariser(
        np.array([2.0, 0.0], "float32"), np.array([-1.0], "float32"), real_anchor=1.0, fake_anchor=0.5
    )
    assert float(past) == pytest.approx(1.5**2 / 2 + 2.0**2)


def _gan(weight: float):
    spec = variants.Spec(latent_dim=8, num_classes=3, image_shape=(28, 28, 1), arch="dense")
    recipe = dataclasses.replace(MODERN, lecam_weight=weight, augment_shift=0)
    gan = variants.build("cgan", spec, recipe, seed=3)
    gan.compile()
    return gan


def test_lecam_anchors_track_the_logit_means_bias_corrected_and_are_checkpointed():
    gan = _gan(0.3)
    assert any(v is gan.lecam_anchors for v in gan.checkpoint_variables())
    real, fake = tf.constant([1.0, 3.0]), tf.constant([-2.0, -4.0])
    term = gan.lecam_term(real, fake)
    # After one update the bias-corrected anchors are exactly the batch means (2, -3).
    expected = losses.lecam_regulariser(real, fake, real_anchor=2.0, fake_anchor=-3.0)
    assert float(term) == pytest.approx(float(expected))
    np.testing.assert_allclose(gan.lecam_anchors.numpy(), [0.01 * 2.0, 0.01 * -3.0], rtol=1e-6)
    with_term = gan.d_adversarial_loss(real, fake)
    assert float(with_term) > float(losses.hinge_discriminator_loss(real, fake))


def test_without_lecam_there_is_no_anchor_and_the_loss_is_plain_hinge():
    gan = _gan(0.0)
    assert gan.lecam_anchors is None
    real, fake = tf.constant([1.0, 3.0]), tf.constant([-2.0, -4.0])
    assert float(gan.d_adversarial_loss(real, fake)) == float(losses.hinge_discriminator_loss(real, fake))


def test_train_step_with_lecam_moves_the_anchors():
    gan = _gan(0.3)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (8, 28, 28, 1)), "float32")
    logs = gan.train_step((images, tf.constant([0, 1, 2, 0, 1, 2, 0, 1])))
    assert np.isfinite(float(logs["d_loss"]))
    assert np.all(gan.lecam_anchors.numpy() != 0.0)


def test_recipe_override_types_each_field_like_the_recipe():
    recipe = override_recipe(MODERN, ["lecam_weight=0.3", "cond_bn=true", "augment_shift=4", "loss=bce"])
    assert (recipe.lecam_weight, recipe.cond_bn, recipe.augment_shift, recipe.loss) == (0.3, True, 4, "bce")
    assert override_recipe(MODERN, []) == MODERN


@pytest.mark.parametrize(
    "pair,message",
    [
        ("nope=1", "FIELD one of"),
        ("lecam_weight", "FIELD=VALUE"),
        ("lecam_weight=high", "takes a number"),
        ("cond_bn=maybe", "takes true or false"),
        ("augment_shift=1.5", "takes an integer"),
    ],
)
def test_recipe_override_names_what_is_wrong(pair, message):
    with pytest.raises(ConfigError, match=message):
        override_recipe(MODERN, [pair])


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(lecam_weight=-1.0), "lecam_weight must be >= 0, got -1.0"),
        (dict(lecam_decay=1.0), r"lecam_decay must be in \[0, 1\)"),
        (dict(jitter_degrees=-1.0), "jitter_degrees must be >= 0, got -1.0"),
        (dict(jitter_zoom=1.0), r"jitter_zoom must be in \[0, 1\)"),
        (dict(g_width=0), "g_width must be positive"),
        (dict(ema_decay=1.5), "ema_decay must be in"),
        (dict(real_target=0.0), "real_target must be in"),
        (dict(loss="wasserstein"), "loss must be one of bce, hinge for cgan, got 'wasserstein'"),
        (dict(loss="ebgan"), "loss must be one of bce, hinge for cgan, got 'ebgan'"),
        (dict(compute_dtype="float16"), "compute_dtype must be one of float32, bfloat16"),
        (dict(compute_dtype="bfloat16", ema_decay=0.0), "needs ema_decay > 0"),
    ],
)
def test_config_refuses_a_recipe_it_cannot_train(changes, message):
    config = TrainConfig.for_dataset("mnist-5k")
    config = dataclasses.replace(config, recipe=dataclasses.replace(config.recipe, **changes))
    with pytest.raises(ConfigError, match=message):
        config.validate()


@pytest.mark.parametrize("variant", sorted(variants.VARIANTS))
@pytest.mark.parametrize("arch", ["dense", "conv"])
@pytest.mark.parametrize("dataset", ["mnist-5k", "fashion-mnist"])
def test_every_shipped_recipe_passes_the_recipe_checks(variant, arch, dataset):
    TrainConfig.for_dataset(dataset, variant=variant, arch=arch).validate()
