"""Every variant x arch builds, has the right shapes, and one train step moves both networks."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.cli import build_parser
from trainer.config import ARTICLE, MODERN

tf = pytest.importorskip("tensorflow")
variants = pytest.importorskip("trainer.variants")


def test_cli_lists_exactly_the_registered_variants():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    (variant_flag,) = [a for a in train._actions if "--variant" in a.option_strings]
    # Every name builds its class, and every variant class defined is reachable by a name.
    registered = {name: variants.variant_class(name) for name in variants.VARIANTS}
    from trainer.variants.base import ConditionalGAN

    def descendants(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from descendants(sub)

    # (Test files may define variants of their own: tests/trainer/test_fifth_variant.py.)
    defined = {cls.variant for cls in descendants(ConditionalGAN) if cls.__module__.startswith("trainer.")}
    assert all(cls.variant == name for name, cls in registered.items())
    assert set(variant_flag.choices) == set(registered) == defined


@pytest.mark.parametrize("variant", sorted(["cgan", "acgan"]))
@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_train_step_updates_both_networks(variant, arch):
    spec = variants.Spec(latent_dim=12, num_classes=3, image_shape=(28, 28, 1), arch=arch)
    recipe = ARTICLE if arch == "dense" else MODERN
    gan = variants.build(variant, spec, recipe, seed=1)
    gan.compile()
    g_before = [w.numpy().copy() for w in gan.generator.trainable_weights]
    d_before = [w.numpy().copy() for w in gan.discriminator.trainable_weights]

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (8, 28, 28, 1)).astype("float32")
    labels = rng.integers(0, 3, 8)
    logs = gan.train_step((tf.constant(images), tf.constant(labels)))

    def changed(before, weights):
        return sum(not np.array_equal(b, w.numpy()) for b, w in zip(before, weights, strict=True))

    assert changed(g_before, gan.generator.trainable_weights) == len(g_before)
    assert changed(d_before, gan.discriminator.trainable_weights) >= len(d_before) - 1
    expected = {"d_loss", "g_loss", "d_real_acc", "d_fake_acc"}
    if variant == "acgan":
        expected |= {"class_acc_real", "class_acc_fake"}
    assert set(logs) == expected
    assert all(np.isfinite(float(v)) for v in logs.values())

    out = gan.generator([tf.constant(rng.standard_normal((5, 12)), "float32"), tf.constant([0, 1, 2, 0, 1])])
    assert out.shape == (5, 28, 28, 1)
    assert float(tf.reduce_max(tf.abs(out))) <= 1.0
    if recipe.ema_decay:
        # EMA weights moved towards the live generator but are not equal to it.
        ema = gan.ema_generator.trainable_weights[0].numpy()
        assert not np.array_equal(ema, g_before[0])
        assert not np.array_equal(ema, gan.generator.trainable_weights[0].numpy())


def test_cgan_with_auxiliary_classifier_trains_its_class_head():
    import dataclasses

    spec = variants.Spec(latent_dim=12, num_classes=3, image_shape=(28, 28, 1), arch="conv")
    recipe = dataclasses.replace(MODERN, aux_classifier=True, g_class_weight=0.1)
    gan = variants.build("cgan", spec, recipe, seed=2)
    gan.compile()
    assert len(gan.discriminator.outputs) == 2
    rng = np.random.default_rng(0)
    head = gan.discriminator.outputs[1]._keras_history.operation
    before = head.kernel.numpy().copy()
    images = tf.constant(rng.uniform(-1, 1, (8, 28, 28, 1)), "float32")
    logs = gan.train_step((images, tf.constant([0, 1, 2, 0, 1, 2, 0, 1])))
    assert {"class_acc_real", "class_acc_fake"} <= set(logs)
    assert not np.array_equal(before, head.kernel.numpy()), "the class head did not learn"


def test_article_dense_cgan_matches_the_article():
    spec = variants.Spec(latent_dim=100, num_classes=10, image_shape=(28, 28, 1), arch="dense")
    gan = variants.build("cgan", spec, ARTICLE)
    dense_units = [layer.units for layer in gan.generator.layers if hasattr(layer, "units")]
    assert dense_units == [256, 512, 1024, 784]
    bn = [layer.momentum for layer in gan.generator.layers if "batch_normalization" in layer.name]
    assert bn == [0.8, 0.8, 0.8]
    d_units = [layer.units for layer in gan.discriminator.layers if hasattr(layer, "units")]
    assert d_units == [512, 256, 1]
    gan.compile()
    assert float(gan.g_optimizer.learning_rate) == pytest.approx(2e-4)
    assert float(gan.g_optimizer.beta_1) == pytest.approx(0.5)


def test_unknown_variant_and_arch_are_rejected():
    spec = variants.Spec(latent_dim=4, num_classes=2, image_shape=(28, 28, 1), arch="dense")
    with pytest.raises(ValueError, match="unknown variant"):
        variants.build("wgan", spec, ARTICLE)
    with pytest.raises(ValueError, match="no arch"):
        variants.build("cgan", variants.Spec(4, 2, (28, 28, 1), "resnet"), ARTICLE)


@pytest.mark.parametrize("variant", ["cgan", "acgan"])
def test_conditional_batchnorm_conditions_every_norm_on_the_label(variant):
    import dataclasses

    from trainer.nets.blocks import ConditionalBatchNorm

    spec = variants.Spec(latent_dim=12, num_classes=3, image_shape=(28, 28, 1), arch="conv")
    gan = variants.build(variant, spec, dataclasses.replace(MODERN, cond_bn=True), seed=4)
    gan.compile()
    norms = [layer for layer in gan.generator.layers if isinstance(layer, ConditionalBatchNorm)]
    assert len(norms) == 3
    assert not any(type(layer).__name__ == "BatchNormalization" for layer in gan.generator.layers)

    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (8, 28, 28, 1)), "float32")
    gan.train_step((images, tf.constant([0, 1, 2, 0, 1, 2, 0, 1])))
    gains = norms[-1].gain.embeddings.numpy()
    assert not np.allclose(gains, 1.0), "per-class gains did not train"
    assert not np.allclose(gains[0], gains[1]), "classes share one gain"

    # Same noise, different label: with the input embedding zeroed, only the norms can tell the classes apart.
    embedding = next(layer for layer in gan.generator.layers if type(layer).__name__ == "Embedding")
    embedding.embeddings.assign(np.zeros_like(embedding.embeddings.numpy()))
    first = np.ones(norms[0].gain.embeddings.shape, "float32")
    first[1] = 3.0
    norms[0].gain.embeddings.assign(first)
    z = tf.constant(np.repeat(rng.standard_normal((1, 12)), 2, axis=0), "float32")
    out = gan.generator([z, tf.constant([0, 1])], training=False).numpy()
    assert np.abs(out[0] - out[1]).max() > 1e-4
