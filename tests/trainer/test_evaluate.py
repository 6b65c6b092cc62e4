"""Quality evaluation: metric functions on known cases, the judge cache, and evaluate() end to end on a
tiny hand-built ONNX generator (no GAN training)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from cgan_contract import (
    CARD_FILE,
    JUDGE_FILE,
    MODEL_FILE,
    JudgeSection,
    ModelCard,
    Quality,
    Training,
    card_json,
    signature,
)
from trainer.data import DIGITS, Dataset, Split, load_dataset
from trainer.evaluation import (
    QUALITY_REPORT,
    EvaluateError,
    diversity,
    evaluate,
    frechet_distance,
    frechet_distance_from_stats,
    label_accuracy,
    matched_counts,
    mean_pairwise_distance,
    mode_collapse,
    per_class_accuracy,
    sample,
    take_per_class,
)
from trainer.evaluation.judge import (
    CNNConfig,
    balanced_subset,
    default_cache_dir,
    load_or_train_judge,
    predict_labels,
    shift_images,
)
from trainer.files import sha256_file

TINY = CNNConfig(filters=(8,), dense=16, dropout=0.0, epochs=2, min_steps=0, max_shift=0, max_train=600)
LATENT = 8


# --- Fréchet distance -----------------------------------------------------------------------------------


def test_frechet_same_gaussian_is_near_zero_and_shift_adds_its_square():
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(6, 6))
    a = rng.normal(size=(20000, 6)) @ mix
    b = rng.normal(size=(20000, 6)) @ mix
    shift = np.array([3.0, 0, 0, -4.0, 0, 0])  # |shift|^2 = 25
    same = frechet_distance(a, b)
    assert same < 0.05 * np.trace(np.cov(a, rowvar=False))
    assert frechet_distance(a, a + shift) == pytest.approx(25, rel=1e-6)  # same covariance exactly
    assert frechet_distance(a, b + shift) == pytest.approx(25, abs=1.0)  # plus sampling noise in the means


def test_frechet_closed_form_for_diagonal_covariances():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))  # 5 + 2
    got = frechet_distance_from_stats(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected) == pytest.approx(7.0)
    assert frechet_distance_from_stats(mu1, np.diag(v1), mu1, np.diag(v1)) == pytest.approx(0, abs=1e-9)


def test_frechet_matches_scipy_sqrtm_for_non_commuting_covariances():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    c1, c2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real)
    assert frechet_distance_from_stats(mu1, c1, mu2, c2) == pytest.approx(reference, rel=1e-6)
    assert frechet_distance_from_stats(mu2, c2, mu1, c1) == pytest.approx(reference, rel=1e-6)


def test_frechet_rejects_too_few_samples():
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


# --- accuracy -------------------------------------------------------------------------------------------


def test_label_accuracy_perfect_and_shuffled_labels_near_chance():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 2000)
    assert label_accuracy(labels, labels) == 1.0
    assert per_class_accuracy(labels, labels, 10) == [1.0] * 10
    shuffled = rng.permutation(labels)
    assert label_accuracy(labels, shuffled) == pytest.approx(0.1, abs=0.01)
    assert np.allclose(per_class_accuracy(labels, shuffled, 10), 0.1, atol=0.03)


def test_per_class_accuracy_counts_within_each_class():
    labels = np.array([0, 0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 0, 1, 1, 0, 2])
    assert per_class_accuracy(pred, labels, 4)[:3] == [0.75, 0.5, 1.0]
    assert np.isnan(per_class_accuracy(pred, labels, 4)[3])
    assert label_accuracy(pred, labels) == pytest.approx(5 / 7)


# --- diversity ------------------------------------------------------------------------------------------


def test_mean_pairwise_distance_known_values():
    assert mean_pairwise_distance(np.array([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)
    assert mean_pairwise_distance(np.array([[0.0], [1.0], [3.0]])) == pytest.approx(2.0)  # (1 + 3 + 2) / 3
    assert np.isnan(mean_pairwise_distance(np.zeros((1, 4))))


def test_collapsed_class_is_flagged_and_matching_spread_is_not():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 300)
    real = rng.normal(size=(900, 16)) + labels[:, None] * 5
    healthy = rng.normal(size=(900, 16)) + labels[:, None] * 5
    ratios = diversity(healthy, labels, real, labels, 3)
    assert np.allclose(ratios, 1.0, atol=0.05)
    assert not mode_collapse(ratios)

    collapsed = healthy.copy()
    collapsed[labels == 1] = collapsed[labels == 1][0]  # every image of class 1 identical
    ratios = diversity(collapsed, labels, real, labels, 3)
    assert ratios[1] == pytest.approx(0.0, abs=1e-6)
    assert ratios[0] == pytest.approx(1.0, abs=0.05)
    assert mode_collapse(ratios)

    narrow = healthy.copy()
    narrow[labels == 2] = 5 * 2 + 0.4 * rng.normal(size=(300, 16))  # a few modes' worth of spread
    ratios = diversity(narrow, labels, real, labels, 3)
    assert ratios[2] == pytest.approx(0.4, abs=0.05)
    assert mode_collapse(ratios, threshold=0.5)
    assert not mode_collapse(ratios, threshold=0.3)


def test_mode_collapse_ignores_undefined_classes():
    assert not mode_collapse([float("nan"), 0.9])
    assert mode_collapse([float("nan"), 0.1])


# --- sample selection -----------------------------------------------------------------------------------


def test_matched_counts_and_take_per_class():
    train_labels = np.array([0] * 5 + [1] * 2 + [2] * 9)
    counts = matched_counts(train_labels, 4, 3)
    assert counts.tolist() == [4, 2, 4]
    idx = take_per_class(train_labels, counts, np.random.default_rng(0))
    assert np.bincount(train_labels[idx]).tolist() == [4, 2, 4]
    assert len(set(idx.tolist())) == len(idx)
    with pytest.raises(ValueError):
        take_per_class(train_labels, np.array([6, 0, 0]))


def test_balanced_subset_spreads_over_classes():
    labels = np.array([0] * 90 + [1] * 10)
    keep = balanced_subset(labels, 20, seed=0)
    assert np.bincount(labels[keep]).tolist() == [10, 10]
    assert sorted(balanced_subset(labels, None, seed=0).tolist()) == list(range(100))


def test_shift_images_moves_ink_without_losing_it():
    x = np.zeros((50, 28, 28, 1), np.float32)
    x[:, 10:18, 12:16] = 1.0
    shifted = shift_images(x, 2, np.random.default_rng(0))
    assert np.allclose(shifted.sum(axis=(1, 2, 3)), x.sum(axis=(1, 2, 3)))
    assert not np.array_equal(shifted, x)


# --- the judge ------------------------------------------------------------------------------------------


def test_cache_dir_defaults_to_home_and_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("CGAN_CACHE_DIR", raising=False)
    assert default_cache_dir() == Path("~/.cache/cgan-synth").expanduser()
    monkeypatch.setenv("CGAN_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path


def _blocks(n_per_class: int, seed: int) -> Split:
    """Class c is a bright 6x6 block at a class-specific spot on faint noise: easy, but needs learning."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), n_per_class)
    images = rng.integers(0, 40, size=(len(labels), 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        y, x = 4 + 12 * (c // 2), 4 + 12 * (c % 2)
        images[i, y : y + 6, x : x + 6] = 255
    order = rng.permutation(len(labels))
    return Split(images[order], labels[order])


def test_judge_trains_caches_and_reloads(tmp_path):
    dataset = Dataset("blocks", _blocks(60, 0), _blocks(25, 1), ["a", "b", "c", "d"])
    config = CNNConfig(filters=(4,), dense=8, dropout=0.0, epochs=3, min_steps=0, max_shift=0)
    start = time.perf_counter()
    first = load_or_train_judge(dataset, tmp_path, config)
    trained_in = time.perf_counter() - start
    assert not first.from_cache and first.path.is_file() and first.path.with_suffix(".json").is_file()
    assert first.test_accuracy > 0.9

    pred, feats = first.predict(dataset.test.images)
    assert feats.shape == (len(dataset.test), 8)
    assert label_accuracy(pred, dataset.test.labels) == pytest.approx(first.test_accuracy)
    shuffled = np.random.default_rng(0).permutation(dataset.test.labels)
    assert label_accuracy(pred, shuffled) < 0.5  # chance is 0.25

    start = time.perf_counter()
    second = load_or_train_judge(dataset, tmp_path, config)
    assert second.from_cache and second.path == first.path
    assert time.perf_counter() - start < trained_in
    assert second.test_accuracy == first.test_accuracy
    pred2, feats2 = second.predict(dataset.test.images)
    assert np.array_equal(pred2, pred) and np.allclose(feats2, feats, atol=1e-5)

    # A different recipe is a different judge, not a stale cache hit.
    other = load_or_train_judge(dataset, tmp_path, CNNConfig(**{**config.__dict__, "dense": 6}))
    assert not other.from_cache and other.path != first.path


# --- evaluate() end to end on a hand-built ONNX generator -----------------------------------------------


def _tiny_generator(path, class_means: np.ndarray, spread: float, seed: int = 0) -> None:
    """image = uint8(clip(round((tanh(z @ W + E[label]) + 1) * 127.5))) as [N, 28, 28, 1]: the contract."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    # E[c] is the class-mean image in tanh space, so spread=0 draws exactly that image for every z.
    t = np.clip(class_means.reshape(len(class_means), -1) / 127.5 - 1, -0.98, 0.98)
    inits = [
        numpy_helper.from_array((spread * rng.normal(size=(LATENT, 784))).astype(np.float32), "W"),
        numpy_helper.from_array(np.arctanh(t).astype(np.float32), "E"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(127.5, np.float32), "half_range"),
        numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
        numpy_helper.from_array(np.array(255.0, np.float32), "hi"),
        numpy_helper.from_array(np.array([-1, 28, 28, 1], np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("MatMul", ["z", "W"], ["zw"]),
        helper.make_node("Gather", ["E", "label"], ["emb"], axis=0),
        helper.make_node("Add", ["zw", "emb"], ["pre"]),
        helper.make_node("Tanh", ["pre"], ["t"]),
        helper.make_node("Add", ["t", "one"], ["t1"]),
        helper.make_node("Mul", ["t1", "half_range"], ["scaled"]),
        helper.make_node("Round", ["scaled"], ["rounded"]),
        helper.make_node("Clip", ["rounded", "lo", "hi"], ["clipped"]),
        helper.make_node("Cast", ["clipped"], ["flat"], to=TensorProto.UINT8),
        helper.make_node("Reshape", ["flat", "shape"], ["image"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info("z", TensorProto.FLOAT, [None, LATENT]),
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
        ],
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [None, 28, 28, 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _model_dir(root, name: str, spread: float, class_means: np.ndarray):
    version_dir = root / name / "1"
    version_dir.mkdir(parents=True)
    _tiny_generator(version_dir / MODEL_FILE, class_means, spread)
    inputs, outputs = signature(LATENT, (28, 28, 1))
    card = ModelCard(
        name=name, version=1, variant="test", arch="linear", dataset="mnist-5k", class_names=DIGITS,
        latent_dim=LATENT, image_shape=(28, 28, 1), inputs=inputs, outputs=outputs, opset=17,
        sha256=sha256_file(version_dir / MODEL_FILE), created_at=datetime.now(UTC), trainer_version="test",
        training=Training(steps=1, batch_size=1, seed=0, wall_seconds=1.0, images_per_second=1.0,
                          steps_per_second=1.0, recipe={"lr": 0.001}),
    )  # fmt: skip
    (version_dir / CARD_FILE).write_text(card_json(card))
    return version_dir


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist-5k")


@pytest.fixture(scope="module")
def models(tmp_path_factory, mnist5k):
    root = tmp_path_factory.mktemp("models")
    means = np.stack([mnist5k.train.images[mnist5k.train.labels == c].mean(axis=0) for c in range(10)])
    return {
        "cache": tmp_path_factory.mktemp("cache"),
        "collapsed": _model_dir(root, "collapsed", 0.0, means),
        "diverse": _model_dir(root, "diverse", 0.15, means),
    }


def test_sample_follows_the_contract_noise_rule(models):
    path = models["diverse"] / MODEL_FILE
    labels = np.array([3, 1, 4, 1, 5])
    images = sample(path, labels, seed=7, batch_size=2)
    assert images.shape == (5, 28, 28, 1) and images.dtype == np.uint8
    assert np.array_equal(images, sample(path, labels, seed=7))
    for k in range(5):
        assert np.array_equal(images[k], sample(path, labels[k : k + 1], seed=7 + k)[0])
    assert not np.array_equal(images, sample(path, labels, seed=8))


def test_evaluate_writes_quality_and_flags_a_collapsed_generator(models):
    version_dir = models["collapsed"]
    before = json.loads((version_dir / CARD_FILE).read_text())
    assert before["quality"] is None

    quality, report = evaluate(
        version_dir, samples_per_class=12, cache_dir=models["cache"], judge_config=TINY, probe_config=TINY
    )

    after = json.loads((version_dir / CARD_FILE).read_text())
    written = Quality.model_validate(after.pop("quality"))
    before.pop("quality")
    # The judge these figures come from now sits beside the generator, declared on the card.
    judge = JudgeSection.model_validate(after.pop("judge"))
    assert before.pop("judge") is None
    assert judge.sha256 == sha256_file(version_dir / JUDGE_FILE) and judge.dataset == "mnist-5k"
    assert judge.test_accuracy == quality.judge_test_accuracy
    assert after == before  # nothing else on the card moved
    ModelCard.model_validate_json((version_dir / CARD_FILE).read_text())
    assert written.model_dump() == quality.model_dump()

    assert quality.samples_per_class == 12 and len(quality.per_class_accuracy) == 10
    assert quality.label_accuracy == pytest.approx(np.mean(quality.per_class_accuracy))
    assert quality.mode_collapse and quality.diversity_ratio < 1e-3
    assert quality.pixel_diversity_ratio < 1e-3
    assert quality.fid_floor > 0 and quality.fid_ratio == pytest.approx(quality.fid / quality.fid_floor)
    assert quality.matched_samples == 120 and quality.test_samples == 500
    assert 0 <= quality.gan_train_accuracy <= 1 and 0 <= quality.real_train_accuracy <= 1
    # Three probe seeds each; the recorded accuracy is their mean.
    assert len(quality.gan_train_runs) == 3 and len(quality.real_train_runs) == 3
    assert quality.gan_train_accuracy == pytest.approx(np.mean(quality.gan_train_runs))
    assert quality.real_train_accuracy == pytest.approx(np.mean(quality.real_train_runs))
    assert "mean of 3 probe seeds" in report
    assert "mode collapse | **YES**" in report and "| 7 |" in report
    assert (version_dir / QUALITY_REPORT).read_text() == report
    assert not list(version_dir.glob(".*"))  # no temp files left behind


def test_evaluate_without_write_leaves_the_directory_alone(models):
    version_dir = models["diverse"]
    card_before = (version_dir / CARD_FILE).read_bytes()
    collapsed = Quality.model_validate(json.loads((models["collapsed"] / CARD_FILE).read_text())["quality"])

    quality, _ = evaluate(
        version_dir, samples_per_class=12, cache_dir=models["cache"], judge_config=TINY, probe_config=TINY,
        write=False,
    )  # fmt: skip

    assert (version_dir / CARD_FILE).read_bytes() == card_before
    assert not (version_dir / QUALITY_REPORT).exists()
    assert quality.diversity_ratio > 0.1 > collapsed.diversity_ratio
    assert quality.pixel_diversity_ratio > 0.1


def test_evaluate_refuses_a_model_that_does_not_match_its_card(models, tmp_path):
    version_dir = models["diverse"]
    card = json.loads((version_dir / CARD_FILE).read_text())
    broken = tmp_path / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / MODEL_FILE).write_bytes((version_dir / MODEL_FILE).read_bytes() + b"\0")
    (broken / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(EvaluateError, match="sha256"):
        evaluate(broken, samples_per_class=4, cache_dir=models["cache"], judge_config=TINY)
    with pytest.raises(EvaluateError, match="at least 2"):
        evaluate(version_dir, samples_per_class=1, cache_dir=models["cache"])
    with pytest.raises(EvaluateError, match="probe-runs"):
        evaluate(version_dir, probe_runs=0, cache_dir=models["cache"])
    with pytest.raises(EvaluateError, match="no model.json"):
        evaluate(tmp_path / "nothing", cache_dir=models["cache"])


def test_the_exported_judge_is_the_keras_judge_and_the_service_filters_with_it(models, mnist5k, tmp_path):
    from cgan_contract import judge_signature, runner
    from service.config import Settings
    from service.metrics import Metrics
    from service.registry import ModelRegistry
    from trainer.evaluation import export_judge_only

    version_dir = models["diverse"]
    assert json.loads((version_dir / CARD_FILE).read_text())["judge"] is None
    path = export_judge_only(version_dir, cache_dir=models["cache"], judge_config=TINY)
    assert path == version_dir / JUDGE_FILE
    card = ModelCard.model_validate_json((version_dir / CARD_FILE).read_text())
    assert card.judge is not None and card.judge.sha256 == sha256_file(path)
    assert (card.judge.inputs, card.judge.outputs) == judge_signature((28, 28, 1), 10)
    # On real test digits: the ONNX judge's probabilities are the Keras judge's softmax.
    keras_judge = load_or_train_judge(mnist5k, models["cache"], TINY)
    digits = mnist5k.test.images[:200]
    probabilities = runner.classify(runner.open_session(path), digits[..., None])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert (probabilities.argmax(axis=1) == predict_labels(keras_judge.model, digits)).all()
    # The service loads, verifies and warms it beside the generator.
    settings = Settings(models_dir=version_dir.parent.parent, bundled_models=False, ort_intra_op_threads=1)
    registry = ModelRegistry(settings, Metrics())
    assert registry.scan()["diverse"] == 1, registry.refusals
    model = registry.models["diverse"]
    assert model.judge is not None
    assert model.classify(digits[:8, ..., None]).shape == (8, 10)
    assert not list(version_dir.glob(".*"))  # no temp files left behind


def test_export_judge_command_errors_are_one_line(tmp_path, capsys):
    from trainer.cli import main

    assert main(["export-judge", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cgan-train export-judge: error:") and "no model.json" in err and "\n" not in err
