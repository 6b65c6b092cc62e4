"""EBGAN: its losses on known cases, its autoencoder D, a few train steps per arch, its recipes, the export
with parity, and the evaluation's collapse flag on it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import cgan_contract as contract
from trainer.cli import build_parser, make_config
from trainer.config import TrainConfig, fast_compute_dtype

tf = pytest.importorskip("tensorflow")

from trainer.nets import losses  # noqa: E402
from trainer.variants import Spec, build  # noqa: E402
from trainer.variants.cgan import CGAN  # noqa: E402
from trainer.variants.ebgan import EBGAN  # noqa: E402

EBGAN_DENSE, EBGAN_CONV = EBGAN.default_recipe("dense"), EBGAN.default_recipe("conv")

LATENT = 8


# --- losses ----------------------------------------------------------------------------------------------


def test_energy_is_the_per_image_mean_squared_error():
    images = np.full((2, 2, 2, 1), -1.0, "float32")
    reconstructions = images.copy()
    reconstructions[1, 0, 0, 0] = 1.0  # one pixel of four off by 2: (2^2) / 4
    assert np.allclose(losses.ebgan_energy(images, reconstructions), [0.0, 1.0])


def test_margin_term_is_zero_once_fakes_reach_the_margin():
    real = np.array([0.2, 0.4], "float32")
    at_or_above = np.array([1.0, 3.0], "float32")
    below = np.array([0.25, 1.0], "float32")
    assert float(losses.ebgan_discriminator_loss(real, at_or_above, margin=1.0)) == pytest.approx(0.3)
    # Only the fake under the margin counts: (0.75 + 0) / 2 on top of the real energy.
    assert float(losses.ebgan_discriminator_loss(real, below, margin=1.0)) == pytest.approx(0.3 + 0.375)
    assert float(losses.ebgan_generator_loss(below)) == pytest.approx(0.625)


def test_margin_term_pushes_only_fakes_below_the_margin():
    fake = tf.Variable([0.5, 2.0])
    with tf.GradientTape() as tape:
        loss = losses.ebgan_discriminator_loss(tf.constant([0.1, 0.1]), fake, margin=1.0)
    assert np.allclose(tape.gradient(loss, fake), [-0.5, 0.0])


def test_pulling_away_term_is_zero_for_orthogonal_codes_and_one_for_parallel_ones():
    orthogonal = np.eye(4, 6, dtype="float32") * np.array([[1.0], [3.0], [0.5], [2.0]], "float32")
    assert float(losses.ebgan_pulling_away_term(orthogonal)) == pytest.approx(0.0, abs=1e-7)
    same = np.tile(np.array([[0.3, -1.2, 2.0]], "float32"), (5, 1))
    assert float(losses.ebgan_pulling_away_term(same)) == pytest.approx(1.0, abs=1e-6)
    # Scale does not matter, direction does: parallel and anti-parallel codes are equally "the same".
    flipped = same * np.array([[1.0], [-2.0], [0.5], [4.0], [-1.0]], "float32")
    assert float(losses.ebgan_pulling_away_term(flipped)) == pytest.approx(1.0, abs=1e-6)
    # Two codes at 60 degrees: cos^2 = 1/4 for each of the two ordered pairs.
    sixty = np.array([[1.0, 0.0], [0.5, np.sqrt(3) / 2]], "float32")
    assert float(losses.ebgan_pulling_away_term(sixty)) == pytest.approx(0.25, abs=1e-6)


def test_pulling_away_term_has_no_pairs_in_a_batch_of_one():
    assert float(losses.ebgan_pulling_away_term(np.ones((1, 3), "float32"))) == 0.0


# --- the networks and a few train steps -----------------------------------------------------------------


def gan_for(arch: str, seed: int = 1, **changes):
    recipe = dataclasses.replace(EBGAN_DENSE if arch == "dense" else EBGAN_CONV, **changes)
    gan = build("ebgan", Spec(LATENT, 3, (28, 28, 1), arch), recipe, seed=seed)
    gan.compile()
    return gan


def batch(n: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = tf.constant(rng.uniform(-1, 1, (n, 28, 28, 1)), "float32")
    return images, tf.constant(rng.integers(0, 3, n))


@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_a_few_train_steps_move_both_networks_and_log_energies(arch):
    gan = gan_for(arch)
    g_before = [w.numpy().copy() for w in gan.generator.trainable_weights]
    d_before = [w.numpy().copy() for w in gan.discriminator.trainable_weights]
    for step in range(3):
        logs = gan.train_step(batch(seed=step))
    assert set(logs) == {"d_loss", "g_loss", "real_energy", "fake_energy", "pull_away"}
    values = {k: float(v) for k, v in logs.items()}
    assert all(np.isfinite(v) for v in values.values())
    assert 0 <= values["real_energy"] <= 4 and 0 <= values["fake_energy"] <= 4
    assert 0 <= values["pull_away"] <= 1
    for before, weights in ((g_before, gan.generator), (d_before, gan.discriminator)):
        after = weights.trainable_weights
        moved = [not np.array_equal(b, w.numpy()) for b, w in zip(before, after, strict=True)]
        assert all(moved), f"{weights.name}: {moved.count(False)} weights did not train"
    assert int(gan.step) == 3


@pytest.mark.parametrize("arch", ["dense", "conv"])
@pytest.mark.parametrize("condition", ["code", "input"])
def test_the_autoencoder_hears_the_label_where_the_recipe_says(arch, condition):
    gan = gan_for(arch, ae_condition=condition, ae_code_dim=16)
    images, _ = batch(4)
    reconstruction, code = gan.discriminator([images, tf.constant([0, 0, 0, 0])])
    other_reconstruction, other_code = gan.discriminator([images, tf.constant([1, 1, 1, 1])])
    assert reconstruction.shape == (4, 28, 28, 1) and code.shape == (4, 16)
    assert float(tf.reduce_max(tf.abs(reconstruction))) <= 1.0
    # "code": the encoder does not see the label, the decoder does; "input": the encoder does.
    assert np.array_equal(code, other_code) == (condition == "code")
    assert not np.allclose(reconstruction, other_reconstruction)


def test_the_generator_is_cgans_for_each_arch():
    for arch in ("dense", "conv"):
        recipe = EBGAN_DENSE if arch == "dense" else EBGAN_CONV
        ebgan = build("ebgan", Spec(LATENT, 3, (28, 28, 1), arch), recipe)
        cgan = build("cgan", Spec(LATENT, 3, (28, 28, 1), arch), CGAN.default_recipe(arch))
        shapes = [tuple(w.shape) for w in ebgan.generator.weights]
        assert shapes == [tuple(w.shape) for w in cgan.generator.weights]
        assert [i.name for i in ebgan.generator.inputs] == ["z", "label"]


def test_mismatch_negatives_add_their_margin_term_to_d_loss():
    """Same weights, seed and batch: the logged D loss (computed before the update) grows by the margin
    term of real images under wrong labels, which a fresh autoencoder reconstructs under a margin of 1
    (its energies start near 0.35)."""
    reference = gan_for("dense", seed=9, margin=1.0, mismatch_weight=0.0)
    gan = gan_for("dense", seed=9, margin=1.0, mismatch_weight=0.5)
    for network in ("generator", "discriminator"):
        getattr(gan, network).set_weights(getattr(reference, network).get_weights())
    plain = reference.train_step(batch(seed=4))
    with_mismatch = gan.train_step(batch(seed=4))
    extra = float(with_mismatch["d_loss"]) - float(plain["d_loss"])
    assert 0 < extra <= 0.5 * gan.recipe.margin
    assert float(with_mismatch["real_energy"]) == pytest.approx(float(plain["real_energy"]), rel=1e-5)


def test_unknown_conditioning_is_refused():
    with pytest.raises(ValueError, match="ae_condition must be one of code, input, got 'label'"):
        gan_for("dense", ae_condition="label")


# --- recipes and the command line -----------------------------------------------------------------------


def test_ebgan_recipes_are_what_the_command_line_trains():
    args = build_parser().parse_args(["train", "--dataset", "mnist-5k", "--variant", "ebgan"])
    config = make_config(args)
    assert (config.variant, config.arch, config.name) == ("ebgan", "conv", "mnist-5k-ebgan-conv")
    conv = dataclasses.replace(EBGAN_CONV, augment_shift=2, compute_dtype=fast_compute_dtype())
    assert config.recipe == conv
    assert (config.steps, config.batch_size) == (16000, 64)  # the other conv variants' schedule
    dense = make_config(build_parser().parse_args(["train", "--variant", "ebgan", "--arch", "dense"]))
    assert dense.recipe == EBGAN_DENSE and dense.jit_compile
    for recipe in (EBGAN_DENSE, EBGAN_CONV):
        assert recipe.loss == "ebgan" and recipe.pt_weight == pytest.approx(0.1) and recipe.margin > 0
        assert recipe.ae_condition == "input" and recipe.mismatch_weight > 0  # as measured
    # run.json round trip keeps the EBGAN knobs (resume and export rebuild the model from it).
    changed = dataclasses.replace(config, recipe=dataclasses.replace(config.recipe, margin=0.7, pt_weight=0))
    assert TrainConfig.from_json(changed.to_json()) == changed


# --- export and evaluation --------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_ebgan_exports_with_parity(tmp_path, arch):
    ort = pytest.importorskip("onnxruntime")
    from trainer.export import export

    gan = gan_for(arch, seed=3)
    gan.train_step(batch())  # BatchNorm statistics and EMA off their initial values
    generator = gan.export_generator
    version_dir = export(
        generator,
        tmp_path,
        name="eb",
        variant="ebgan",
        arch=arch,
        dataset="test",
        class_names=["a", "b", "c"],
        latent_dim=LATENT,
        image_shape=(28, 28, 1),
    )
    session = ort.InferenceSession(str(version_dir / contract.MODEL_FILE), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["z", "label"]
    z = contract.noise(7, 6, LATENT)
    labels = np.array([0, 1, 2, 2, 1, 0])
    got = session.run(["image"], {"z": z, "label": labels})[0]
    want = contract.to_uint8(np.asarray(generator([z, labels.astype("int32")], training=False)))
    assert got.dtype == np.uint8 and np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert contract.read_card(version_dir).variant == "ebgan"


def test_evaluation_flags_a_collapsed_ebgan_generator(tmp_path):
    """The collapse flag is computed from the generated images, whatever the variant (test_evaluate shows
    it staying off for a diverse generator): an EBGAN generator cut off from its noise is flagged."""
    from trainer.data import DIGITS
    from trainer.evaluation import evaluate
    from trainer.evaluation.judge import CNNConfig
    from trainer.export import export

    tiny = CNNConfig(filters=(8,), dense=16, dropout=0.0, epochs=2, min_steps=0, max_shift=0, max_train=600)
    gan = build("ebgan", Spec(LATENT, 10, (28, 28, 1), "dense"), EBGAN_DENSE, seed=5)
    gan.compile()
    first = next(layer for layer in gan.generator.layers if type(layer).__name__ == "Dense")
    first.kernel.assign(np.zeros_like(first.kernel.numpy()))  # z no longer reaches the image
    collapsed = export(
        gan.generator,
        tmp_path / "models",
        name="collapsed",
        variant="ebgan",
        arch="dense",
        dataset="mnist-5k",
        class_names=DIGITS,
        latent_dim=LATENT,
        image_shape=(28, 28, 1),
    )
    quality, report = evaluate(
        collapsed,
        samples_per_class=12,
        probe_runs=1,
        cache_dir=tmp_path / "cache",
        judge_config=tiny,
        probe_config=tiny,
    )
    assert quality.mode_collapse and quality.diversity_ratio < 1e-3
    assert "mode collapse | **YES**" in report
    assert contract.read_card(collapsed).quality.mode_collapse
