"""InfoGAN: the codes reach G and Q, training moves all three, export adds the ``codes`` input with parity,
the card lists the codes, and the code sweeps of ``cgan-train evaluate`` give finite figures per code."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import cgan_contract as contract
from cgan_contract import runner

tf = pytest.importorskip("tensorflow")

from trainer.config import ConfigError, NoExtras, TrainConfig, recipe_for  # noqa: E402
from trainer.evaluation import code_sweeps  # noqa: E402
from trainer.evaluation.code_sweeps import CodeFigures, name_codes, spearman_rows  # noqa: E402
from trainer.evaluation.report import render_codes  # noqa: E402
from trainer.export import export  # noqa: E402
from trainer.variants import Spec, build  # noqa: E402

LATENT = 8


def trained(arch: str, num_codes: int = 2, steps: int = 2):
    gan = build("infogan", Spec(LATENT, 3, (28, 28, 1), arch), recipe_for("infogan", arch, 2), seed=5)
    gan.compile()
    assert gan.num_codes == num_codes == 2
    rng = np.random.default_rng(0)
    for _ in range(steps):
        images = tf.constant(rng.uniform(-1, 1, (8, 28, 28, 1)), "float32")
        logs = gan.train_step((images, tf.constant(rng.integers(0, 3, 8))))
    return gan, logs


def test_recipes_carry_codes_and_only_infogan_has_them():
    for arch in ("dense", "conv"):
        assert recipe_for("infogan", arch).num_codes == 2
        assert "num_codes" not in recipe_for("cgan", arch).flat()
    conv = recipe_for("infogan", "conv", augment_shift=0)
    # The conv recipe is CGAN's (projection D, real-only class head, conditional BN) plus the codes.
    assert dataclasses.replace(conv, extras=NoExtras()) == recipe_for("cgan", "conv", augment_shift=0)
    config = TrainConfig.for_dataset("mnist-5k", variant="infogan")
    assert config.name == "mnist-5k-infogan-conv" and config.recipe.num_codes == 2
    assert TrainConfig.from_json(config.to_json()) == config


def test_infogan_without_codes_is_refused():
    no_codes = dataclasses.replace(recipe_for("infogan", "dense"), num_codes=0)
    with pytest.raises(ValueError, match="at least one style code"):
        build("infogan", Spec(LATENT, 3, (28, 28, 1), "dense"), no_codes)
    from trainer.train import build_model

    config = TrainConfig.for_dataset("mnist-5k", variant="infogan", recipe=no_codes)

    class Data:
        num_classes, image_shape = 3, (28, 28, 1)

    with pytest.raises(ConfigError, match="at least one style code"):
        build_model(config, Data())


@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_train_step_moves_generator_discriminator_and_q(arch):
    gan = build("infogan", Spec(LATENT, 3, (28, 28, 1), arch), recipe_for("infogan", arch), seed=1)
    gan.compile()
    q = gan.discriminator.get_layer("q_codes")
    before = {
        "g": [w.numpy().copy() for w in gan.generator.trainable_weights],
        "q": q.kernel.numpy().copy(),
    }
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (8, 28, 28, 1)), "float32")
    logs = gan.train_step((images, tf.constant([0, 1, 2, 0, 1, 2, 0, 1])))
    moved = sum(
        not np.array_equal(b, w.numpy())
        for b, w in zip(before["g"], gan.generator.trainable_weights, strict=True)
    )
    assert moved == len(before["g"])
    assert not np.array_equal(before["q"], q.kernel.numpy()), "Q did not learn"
    expected = {"d_loss", "g_loss", "d_real_acc", "d_fake_acc", "q_loss"}
    if arch == "conv":
        expected |= {"class_acc_real", "class_acc_fake"}
    assert set(logs) == expected and all(np.isfinite(float(v)) for v in logs.values())
    # Codes uniform in [-1, 1] and a Q that knows nothing yet: MSE near the uniform variance 1/3.
    assert 0.05 < float(logs["q_loss"]) < 1.5

    # G hears the codes: same noise and label, other codes, another image.
    z = np.repeat(contract.noise(3, 1, LATENT), 2, axis=0)
    codes = np.array([[-1.0, 0.0], [1.0, 0.0]], np.float32)
    out = gan.generator([z, np.array([1, 1], np.int32), codes], training=False).numpy()
    assert out.shape == (2, 28, 28, 1) and np.abs(out[0] - out[1]).max() > 1e-4


def test_sampled_codes_cover_the_contract_range():
    gan = build("infogan", Spec(LATENT, 3, (28, 28, 1), "dense"), recipe_for("infogan", "dense"), seed=2)
    (codes,) = gan.generator_extras(4000)
    codes = codes.numpy()
    assert codes.shape == (4000, 2) and codes.min() >= -1.0 and codes.max() <= 1.0
    assert np.mean(codes, axis=0) == pytest.approx([0, 0], abs=0.05)
    assert np.var(codes, axis=0) == pytest.approx([1 / 3, 1 / 3], abs=0.03)
    assert gan.code_ranges == [(-1.0, 1.0), (-1.0, 1.0)]


@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_export_has_the_codes_input_parity_on_codes_and_codes_on_the_card(tmp_path, arch):
    gan, _ = trained(arch)
    codes = [
        contract.StyleCode(name=f"c{j}", recovery_error=e) for j, e in enumerate(gan.code_recovery_error(64))
    ]
    out = export(
        gan.export_generator,
        tmp_path,
        name="info",
        variant="infogan",
        arch=arch,
        dataset="test",
        class_names=["a", "b", "c"],
        latent_dim=LATENT,
        image_shape=(28, 28, 1),
        codes=codes,
    )
    card = contract.read_card(out)
    assert [c.name for c in card.codes] == ["c0", "c1"] and card.code_ranges == [(-1.0, 1.0)] * 2
    assert all(0 <= c.recovery_error < 2 for c in card.codes)
    assert (card.inputs, card.outputs) == contract.signature(LATENT, (28, 28, 1), num_codes=2)

    session = runner.open_session(out / contract.MODEL_FILE)
    assert [(i.name, i.type, i.shape[1:]) for i in session.get_inputs()] == [
        ("z", "tensor(float)", [LATENT]),
        ("label", "tensor(int64)", []),
        ("codes", "tensor(float)", [2]),
    ]
    # Parity on given codes (not only the seed rule's), across the range's ends.
    seeds = contract.request_seeds(40, 6)
    labels = np.array([0, 1, 2, 2, 1, 0])
    chosen = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1], [0, 0.5], [0.25, -0.75]], np.float32)
    got = runner.generate(session, labels, seeds, LATENT, code_ranges=card.code_ranges, codes=chosen)
    z = contract.noise_for_seeds(seeds, LATENT)
    want = contract.to_uint8(
        gan.export_generator([z, labels.astype("int32"), chosen], training=False).numpy()
    )
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    # The codes matter in the exported graph too.
    flipped = runner.generate(session, labels, seeds, LATENT, code_ranges=card.code_ranges, codes=-chosen)
    assert not np.array_equal(got, flipped)


def test_trained_run_exports_codes_with_recovery_error_and_a_grid(exported_infogan_dir):
    version = exported_infogan_dir / "tiny-info" / "1"
    card = contract.read_card(version)
    assert card.variant == "infogan" and [c.name for c in card.codes] == ["c0", "c1"]
    assert all(c.recovery_error is not None and np.isfinite(c.recovery_error) for c in card.codes)
    assert all(c.spearman is None for c in card.codes)  # until evaluate measures them
    assert card.training.recipe["num_codes"] == 2
    assert (version / "samples.png").is_file()


def test_code_sweeps_give_finite_figures_per_code(exported_infogan_dir, tmp_path):
    import shutil

    version = tmp_path / "tiny-info" / "1"
    shutil.copytree(exported_infogan_dir / "tiny-info" / "1", version)
    card = contract.read_card(version)
    session = runner.open_session(version / contract.MODEL_FILE)

    images = code_sweeps.sweep_images(session, card, 1, sweeps=4, steps=5, seed=7)
    assert images.shape == (4, 5, 28, 28, 1)
    # A sweep holds its seed's noise and other code: step k of sweep 2 equals that single image.
    codes = contract.codes_for_seeds([9], card.latent_dim, card.code_ranges)
    codes[0, 1] = code_sweeps.sweep_values(-1, 1, 5)[3]
    single = runner.generate(
        session, [2 % 3], [9], card.latent_dim, code_ranges=card.code_ranges, codes=codes
    )
    assert np.array_equal(images[2, 3], single[0])

    codes, figures = code_sweeps.evaluated_codes(session, card, sweeps=30, steps=5, seed=0)
    assert len(codes) == len(figures) == 2
    for code, f in zip(codes, figures, strict=True):
        assert set(code.spearman) == set(f.median) and code.spearman  # some property is defined
        assert all(-1 <= v <= 1 and np.isfinite(v) for v in code.spearman.values())
        assert all(0 < n <= 30 for n in f.defined.values() if n)
        assert code.recovery_error == card.codes[f.index].recovery_error  # kept from export
    report = render_codes(codes, figures, 30, 5)
    assert "| c0 |" in report and "| c1 |" in report

    # The card takes the figures (and names) and still validates for the service.
    from trainer.evaluation.report import write_quality

    quality = contract.Quality.model_validate(
        dict(
            samples_per_class=2, label_accuracy=1, per_class_accuracy=[1, 1, 1], judge_test_accuracy=1, fid=1,
            fid_floor=1, fid_ratio=1, gan_train_accuracy=1, real_train_accuracy=1, diversity_ratio=1,
            mode_collapse=False, evaluated_at="2026-01-01T00:00:00Z",
        )
    )  # fmt: skip
    write_quality(version, quality, codes)
    written = contract.read_card(version)
    assert [c.spearman for c in written.codes] == [c.spearman for c in codes]
    assert json.loads((version / contract.CARD_FILE).read_text())["codes"][0]["low"] == -1.0


def test_spearman_rows_known_values():
    x = np.tile(np.arange(5.0), (4, 1))
    y = np.array([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1], [1, 1, 1, 1, 1], [1, 3, 2, 5, 4]], float)
    rho = spearman_rows(x, y)
    assert rho[0] == pytest.approx(1) and rho[1] == pytest.approx(-1) and np.isnan(rho[2])
    assert rho[3] == pytest.approx(1 - 6 * (0 + 1 + 1 + 1 + 1) / (5 * 24))  # no ties: the textbook formula
    ties = spearman_rows(np.array([[1.0, 2, 3, 4]]), np.array([[1.0, 1, 2, 2]]))
    assert ties[0] == pytest.approx(np.corrcoef([1, 2, 3, 4], [1.5, 1.5, 3.5, 3.5])[0, 1])
    assert np.isnan(spearman_rows(np.array([[1.0, 2, 3]]), np.array([[1.0, np.nan, 3]])))[0]


def test_codes_are_named_after_what_they_track_each_property_once():
    def figures(index, **median):
        return CodeFigures(index, median, {k: abs(v) for k, v in median.items()}, {k: 100 for k in median})

    found = [
        figures(0, slant=-0.93, ink=0.5),
        figures(1, slant=0.85, width=0.82),  # slant is taken by the stronger code 0
        figures(2, ink=0.79, width=0.2),  # below the threshold
    ]
    assert name_codes(found) == ["slant", "width", "c2"]


def test_evaluate_fills_the_codes_on_the_card_and_draws_traversals(exported_infogan_dir, tmp_path):
    import shutil

    from trainer.evaluation import evaluate
    from trainer.evaluation.judge import CNNConfig

    tiny = CNNConfig(filters=(8,), dense=16, dropout=0.0, epochs=1, min_steps=0, max_shift=0, max_train=300)
    version = tmp_path / "tiny-info" / "1"
    shutil.copytree(exported_infogan_dir / "tiny-info" / "1", version)
    before = contract.read_card(version)
    quality, report = evaluate(
        version, samples_per_class=4, cache_dir=tmp_path / "cache", judge_config=tiny, probe_config=tiny,
        probe_runs=1, code_sweeps=20, code_steps=5,
    )  # fmt: skip
    card = contract.read_card(version)
    assert card.quality == quality
    assert len(card.codes) == 2 and all(c.spearman for c in card.codes)
    assert [c.recovery_error for c in card.codes] == [c.recovery_error for c in before.codes]
    assert "## Style codes" in report and "## Style codes" in (version / "quality.md").read_text()
    # Three training steps make noise, whose pixel statistics follow any input: no code is named.
    assert quality.label_accuracy < 0.9 and [c.name for c in card.codes] == ["c0", "c1"]
    assert "keep their generic names" in report
    from PIL import Image

    for j in range(2):
        grid = Image.open(version / f"traversal-c{j}.png")
        assert grid.size == (2 * 5 * 28, 2 * 10 * 28)  # columns = steps, rows = classes, drawn at 2x
    with pytest.raises(Exception, match="code-steps"):
        evaluate(version, code_steps=2)


def test_cli_offers_infogan_and_rejects_too_few_code_steps_in_one_line(tmp_path, capsys):
    from trainer.cli import build_parser, main

    args = build_parser().parse_args(["train", "--variant", "infogan", "--arch", "dense"])
    assert args.variant == "infogan"
    assert main(["evaluate", str(tmp_path), "--code-steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--code-steps must be at least 3" in err
