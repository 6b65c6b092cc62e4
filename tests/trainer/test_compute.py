"""The training step's faster arithmetic: fused BatchNorm, fused Adam and bfloat16 compute.

The first two are the same maths in fewer kernels, so they are checked against Keras's own layers to float
rounding; bfloat16 is a different precision, so it is checked for what it must keep: float32 weights,
a float32 exported generator, checkpoints that either precision can resume.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import tensorflow as tf

from trainer import variants
from trainer.config import ConfigError, TrainConfig, fast_compute_dtype, recipe_for
from trainer.nets.blocks import ConditionalBatchNorm
from trainer.nets.optimizers import Adam as FusedAdam


def test_fused_conditional_batchnorm_matches_keras_batchnorm_outputs_gradients_and_statistics():
    import keras

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2.0, 3.0, (8, 5, 5, 6)), "float32")
    labels = tf.constant([0, 1, 2, 0, 1, 2, 0, 1])
    fused, reference = ConditionalBatchNorm(3), ConditionalBatchNorm(3)
    fused([x, labels])
    reference([x, labels])
    reference.gain.embeddings.assign(rng.normal(1.0, 0.2, (3, 6)).astype("float32"))
    fused.set_weights(reference.get_weights())

    def keras_batchnorm(layer):
        shape = (-1, 1, 1, 6)
        gain, bias = tf.reshape(layer.gain(labels), shape), tf.reshape(layer.bias(labels), shape)
        return layer.norm(x, training=True) * gain + bias

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours, theirs = fused([x, labels], training=True), keras_batchnorm(reference)
        ours_loss, theirs_loss = tf.reduce_sum(ours * tf.sin(x)), tf.reduce_sum(theirs * tf.sin(x))
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    np.testing.assert_allclose(tape.gradient(ours_loss, x), tape.gradient(theirs_loss, x), atol=1e-5)
    gain_grads = [
        tf.convert_to_tensor(tape.gradient(loss, layer.gain.embeddings))
        for loss, layer in ((ours_loss, fused), (theirs_loss, reference))
    ]
    np.testing.assert_allclose(*gain_grads, atol=1e-4)
    for ours_var, theirs_var in zip(fused.weights, reference.weights, strict=True):
        np.testing.assert_allclose(ours_var.numpy(), theirs_var.numpy(), atol=1e-6, err_msg=ours_var.path)
    assert not np.allclose(fused.norm.moving_mean.numpy(), 0.0), "the running mean did not move"
    # Inference still takes Keras's path, on the statistics the fused path kept.
    np.testing.assert_allclose(
        fused([x, labels], training=False), reference([x, labels], training=False), atol=1e-5
    )
    assert keras.backend.backend() == "tensorflow"


@pytest.mark.parametrize("beta_1", [0.0, 0.5])
def test_fused_adam_takes_the_same_steps_as_keras_adam(beta_1):
    import keras

    rng = np.random.default_rng(1)
    start = rng.normal(size=(7, 5)).astype("float32")
    table = rng.normal(size=(4, 3)).astype("float32")  # an embedding: its gradient is IndexedSlices
    weights = {name: (keras.Variable(start), keras.Variable(table)) for name in ("keras", "fused")}
    optimizers = {
        "keras": keras.optimizers.Adam(1e-2, beta_1=beta_1, beta_2=0.9),
        "fused": FusedAdam(1e-2, beta_1=beta_1, beta_2=0.9),
    }
    for name, optimizer in optimizers.items():
        optimizer.build(list(weights[name]))
    for _ in range(5):
        grad = tf.constant(rng.normal(size=(7, 5)).astype("float32"))
        rows = tf.IndexedSlices(
            tf.constant(rng.normal(size=(2, 3)).astype("float32")), tf.constant([0, 2]), tf.constant([4, 3])
        )
        for name, optimizer in optimizers.items():
            optimizer.apply_gradients(zip([grad, rows], weights[name], strict=True))
    for ours, theirs in zip(weights["fused"], weights["keras"], strict=True):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-6)
        assert not np.allclose(ours.numpy(), start if ours.shape == start.shape else table)
    for ours, theirs in zip(optimizers["fused"].variables, optimizers["keras"].variables, strict=True):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-5, atol=1e-7)
    # Named like Keras's Adam ("adam", "adam_1", ...: one counter for both), so the variable paths a
    # checkpoint stores are the same and a run written with Keras's Adam resumes.
    fresh = FusedAdam(), keras.optimizers.Adam()
    for optimizer in fresh:
        optimizer.build(list(weights["keras"]))
    paths = [[re.sub(r"^adam_\d+/", "adam/", v.path) for v in o.variables] for o in fresh]
    assert paths[0] == paths[1] and paths[0][0] == "adam/iteration"


def _gan(compute_dtype: str):
    spec = variants.Spec(latent_dim=8, num_classes=3, image_shape=(28, 28, 1), arch="conv")
    cgan_conv = variants.variant_class("cgan").default_recipe("conv")
    recipe = dataclasses.replace(cgan_conv, g_width=16, d_width=16, compute_dtype=compute_dtype)
    gan = variants.build("cgan", spec, recipe, seed=2)
    gan.compile()
    return gan


def test_bfloat16_computes_the_convolutions_in_bfloat16_and_keeps_everything_it_stores_float32():
    gan = _gan("bfloat16")
    compute = {layer.name: layer.compute_dtype for layer in gan.generator.layers}
    assert any(dtype == "bfloat16" for dtype in compute.values()), compute
    assert {layer.compute_dtype for layer in gan.export_generator.layers} == {"float32"}
    stored = {v.dtype for v in gan.checkpoint_variables()}
    assert "bfloat16" not in stored and "float32" in stored, stored

    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (8, 28, 28, 1)), "float32")
    before = [w.numpy() for w in gan.generator.trainable_weights]
    logs = gan.train_step((images, tf.constant([0, 1, 2, 0, 1, 2, 0, 1])))
    assert np.isfinite(float(logs["d_loss"])) and np.isfinite(float(logs["g_loss"]))
    after = [w.numpy() for w in gan.generator.trainable_weights]
    assert any(not np.array_equal(b, a) for b, a in zip(before, after, strict=True)), "G did not train"
    out = gan.export_generator([tf.zeros((2, 8)), tf.constant([0, 1])], training=False)
    assert out.dtype == "float32"


def test_a_checkpoint_resumes_in_either_precision(tmp_path):
    from trainer import checkpoint

    bf16, f32 = _gan("bfloat16"), _gan("float32")
    images = tf.constant(np.random.default_rng(1).uniform(-1, 1, (4, 28, 28, 1)), "float32")
    bf16.train_step((images, tf.constant([0, 1, 2, 0])))
    checkpoint.save(tmp_path, 1, bf16.checkpoint_variables(), {"step": 1, "wall_seconds": 1.0})
    assert checkpoint.load_latest(tmp_path, f32.checkpoint_variables())["step"] == 1
    for saved, loaded in zip(bf16.checkpoint_variables(), f32.checkpoint_variables(), strict=True):
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(loaded))


def test_bfloat16_is_refused_where_it_would_do_nothing_or_ship_a_bfloat16_model():
    config = TrainConfig.for_dataset("mnist-5k", arch="dense")
    dense = dataclasses.replace(config, recipe=dataclasses.replace(config.recipe, compute_dtype="bfloat16"))
    with pytest.raises(ConfigError, match="compute_dtype=bfloat16 is for the conv arch"):
        dense.validate()


def test_conv_recipes_take_bfloat16_only_where_the_cpu_has_it(tmp_path):
    amx, plain = tmp_path / "amx", tmp_path / "plain"
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_bf16 amx_tile\n")
    plain.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert fast_compute_dtype(amx) == "bfloat16"
    assert fast_compute_dtype(plain) == "float32"
    assert fast_compute_dtype(tmp_path / "missing") == "float32"
    assert recipe_for("cgan", "conv").compute_dtype == fast_compute_dtype()
    assert recipe_for("cgan", "dense").compute_dtype == "float32"
