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
    EvalOptions,
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
    prdc,
    prdc_per_class,
    render_report,
    sample,
    take_per_class,
)
from trainer.evaluation.augmentation import augmentation_value, probe_steps, synthetic_counts
from trainer.evaluation.intervals import clears, spread
from trainer.evaluation.judge import (
    PROBE_CONFIG,
    CNNConfig,
    balanced_subset,
    default_cache_dir,
    load_or_train_judge,
    predict_labels,
    shift_images,
)
from trainer.evaluation.scores import knn_radii_squared
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


# --- precision, recall, density, coverage ---------------------------------------------------------------


def _prdc_by_definition(real, fake, k):
    """The papers' formulas over full distance matrices, written independently of the chunked code."""
    d_rr = np.linalg.norm(real[:, None] - real[None], axis=2)
    d_ff = np.linalg.norm(fake[:, None] - fake[None], axis=2)
    d_rf = np.linalg.norm(real[:, None] - fake[None], axis=2)  # [N, M]
    r_real, r_fake = np.sort(d_rr, axis=1)[:, k], np.sort(d_ff, axis=1)[:, k]
    in_real = d_rf < r_real[:, None]
    return (
        in_real.any(axis=0).mean(),
        (d_rf < r_fake[None, :]).any(axis=1).mean(),
        in_real.sum() / (k * len(fake)),
        (d_rf.min(axis=1) < r_real).mean(),
    )


def test_knn_radii_known_values():
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    assert knn_radii_squared(x, k=1).tolist() == [1, 1, 4, 16]
    assert knn_radii_squared(x, k=2).tolist() == [9, 4, 9, 36]
    with pytest.raises(ValueError, match="at least 4 rows"):
        knn_radii_squared(x[:3], k=3)


def test_prdc_of_a_set_with_itself_is_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8))
    for other in (x, x[rng.permutation(len(x))]):
        score = prdc(x, other)
        assert (score.precision, score.recall, score.coverage) == (1.0, 1.0, 1.0)
        # Open balls hold their centre and k-1 neighbours; round-off may count a k-th on the boundary.
        assert score.density == pytest.approx(1.0, abs=0.01)


def test_prdc_of_far_apart_sets_is_zero():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 8))
    assert prdc(real, rng.normal(size=(250, 8)) + 100.0) == (0.0, 0.0, 0.0, 0.0)


def test_prdc_of_two_draws_of_one_distribution():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(2000, 2)), rng.normal(size=(2000, 2))
    score = prdc(real, fake)
    assert score.precision > 0.9 and score.recall > 0.9
    assert score.density == pytest.approx(1.0, abs=0.1)  # its expectation for matching distributions
    assert score.coverage == pytest.approx(1 - 0.5**5, abs=0.02)  # Naeem et al., Lemma 2, for M = N
    shrunk = prdc(real, 0.3 * fake)  # faithful but narrow: fidelity stays, diversity drops
    assert shrunk.precision > 0.99 and shrunk.density > 0.9
    assert shrunk.recall < 0.6 and shrunk.coverage < 0.6


def test_prdc_of_a_subset_has_full_precision_and_partial_recall():
    rng = np.random.default_rng(0)
    cluster_a, cluster_b = rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 50.0
    real = np.concatenate([cluster_a, cluster_b])
    score = prdc(real, cluster_a)  # the generator reproduces only one of the two modes
    assert score.precision == 1.0 and score.density == pytest.approx(1.0, abs=0.01)
    assert score.recall == 0.5 and score.coverage == 0.5


def test_prdc_matches_the_definition_and_does_not_depend_on_chunking():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(150, 6)), rng.normal(size=(120, 6)) * 1.3 + 0.4
    for k in (1, 3, 5):
        whole = prdc(real, fake, k)
        assert whole == pytest.approx(_prdc_by_definition(real, fake, k))
        # Bands of one and of seven rows: the same figures.
        assert prdc(real, fake, k, chunk_bytes=1) == pytest.approx(whole)
        assert prdc(real, fake, k, chunk_bytes=7 * 8 * 150) == pytest.approx(whole)


def test_prdc_rejects_mismatched_or_too_small_sets():
    with pytest.raises(ValueError, match="equal D"):
        prdc(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError, match="at least 6 rows"):
        prdc(np.random.default_rng(0).normal(size=(5, 3)), np.zeros((10, 3)))


def test_prdc_per_class_scores_each_class_on_its_own():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 60)
    real = rng.normal(size=(240, 8)) + labels[:, None] * 3.0
    fake = real.copy()
    fake[labels == 1] += 100.0  # class 1 generated far from its real images
    fake_labels = labels.copy()
    fake_labels[labels == 3] = 2  # no generated image of class 3; class 2 gets both halves
    scores = prdc_per_class(real, labels, fake, fake_labels, 5)
    assert scores[0][:2] == (1.0, 1.0) and scores[0].coverage == 1.0
    assert scores[0].density == pytest.approx(1.0, abs=0.02)
    assert scores[1] == (0.0, 0.0, 0.0, 0.0)
    assert scores[2] == prdc(real[labels == 2], fake[fake_labels == 2])
    assert scores[2].recall == 1.0 and scores[2].precision < 1.0
    assert scores[3] is None and scores[4] is None  # too few samples for k=5 neighbours


# --- augmentation value ---------------------------------------------------------------------------------


def test_synthetic_counts_follow_the_real_class_mix():
    real_labels = np.array([0] * 5 + [1] * 2 + [2] * 8)
    assert synthetic_counts(real_labels, 1.0, 4).tolist() == [5, 2, 8, 0]
    assert synthetic_counts(real_labels, 2.0, 4).tolist() == [10, 4, 16, 0]
    assert synthetic_counts(real_labels, 0.5, 4).tolist() == [2, 1, 4, 0]  # rounded half to even


def test_probe_steps_follow_the_training_loop():
    assert probe_steps(PROBE_CONFIG, 4500) == 10 * 36
    assert probe_steps(PROBE_CONFIG, 13500) == 10 * 106
    assert probe_steps(TINY, 13500) == 2 * 5  # capped at max_train=600


def test_augmentation_value_trains_each_arm_on_real_plus_its_share_of_generated():
    real_labels = np.array([0] * 6 + [1] * 4)
    real_images = np.full((10, 2, 2), 255, np.uint8)  # real images are all ink, generated ones numbered
    pool_labels = np.repeat([0, 1], 20)
    pool_images = np.arange(40, dtype=np.uint8)[:, None, None] * np.ones((1, 2, 2), np.uint8)
    calls = []

    def probe(images, labels, config, run):
        calls.append((images, labels, run, config))
        return len(images) / 100 + run / 1000  # distinct per arm and per seed

    config = CNNConfig(epochs=2, min_steps=0, batch_size=4)
    arms = augmentation_value(real_images, real_labels, pool_images, pool_labels, 2, probe, config, runs=3)

    assert [a.synthetic_multiple for a in arms] == [0.0, 1.0, 2.0]
    assert [a.real_samples for a in arms] == [10, 10, 10]
    assert [a.synthetic_samples for a in arms] == [0, 10, 20]
    assert [run for _, _, run, _ in calls] == [0, 1, 2] * 3
    # Every arm gets at least the largest arm's steps (30 images: 2 epochs of 8 batches), not its own
    # epochs' worth: more data must not mean more training.
    assert {c.min_steps for *_, c in calls} == {16}
    for arm, total in zip(arms, (10, 20, 30), strict=True):
        assert arm.runs == pytest.approx([total / 100, total / 100 + 0.001, total / 100 + 0.002])
        assert arm.accuracy == pytest.approx(np.mean(arm.runs))
        assert arm.steps == probe_steps(calls[0][3], total)
    assert [a.steps for a in arms] == [6 * 3, 4 * 5, 2 * 8]  # whole epochs: 16 steps rounded up
    generated = []
    for images, labels, *_ in calls[::3]:
        is_real = images[:, 0, 0] == 255
        assert is_real.sum() == 10 and np.array_equal(np.bincount(labels[is_real]), [6, 4])
        generated.append(images[~is_real, 0, 0])
        # Each generated image keeps its own label, and the class mix is the real one.
        assert np.array_equal(labels[~is_real], pool_labels[generated[-1]])
    assert np.bincount(pool_labels[generated[1]]).tolist() == [6, 4]
    assert np.bincount(pool_labels[generated[2]]).tolist() == [12, 8]
    assert set(generated[1]) < set(generated[2])  # the 1x images are among the 2x ones

    with pytest.raises(ValueError, match="class 0 has 20 items, 30 requested"):
        augmentation_value(real_images, real_labels, pool_images, pool_labels, 2, probe, config, (5.0,))


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
        version_dir, samples_per_class=12, cache_dir=models["cache"], judge_config=TINY, probe_config=TINY,
        augmentation_multiples=(1.0,),
    )  # fmt: skip

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
    # Each probe figure's spread over its seeds: std and min-max.
    s = spread(quality.gan_train_runs)
    assert f"± {100 * s.std:.1f} ({100 * s.low:.1f}-{100 * s.high:.1f})" in report
    # KID and FID at matched sizes: 12 of each class on every side (the test split has 50 per class).
    assert quality.kid_samples == 120
    assert quality.fid_ratio_matched == pytest.approx(quality.fid_matched / quality.fid_floor_matched)
    # Ten repeated images are far from real digits, the real training digits are not: the score clears the
    # floor on both distances, by whole intervals.
    iv = quality.intervals
    assert iv.resamples == 200 and iv.level == 0.95
    for name in ("fid", "fid_floor", "fid_ratio", "fid_matched", "fid_floor_matched", "kid", "kid_floor"):
        interval, value = getattr(iv, name), getattr(quality, name)
        assert interval.low <= value <= interval.high, name
    assert clears(iv.kid, iv.kid_floor) and clears(iv.fid_matched, iv.fid_floor_matched)
    assert quality.kid > 0 and "| KID (judge features) |" in report and "| FID at matched sizes |" in report
    assert f"[{iv.fid.low:.3g}, {iv.fid.high:.3g}]" in report
    assert "mode collapse | **YES**" in report and "| 7 |" in report
    # Ten distinct images, each repeated: every generated ball has radius 0, so no real image is inside one.
    assert quality.prdc_k == 5 and quality.prdc.recall == 0.0
    assert 0 <= quality.prdc.precision <= 1 and 0 <= quality.prdc.coverage <= 1 and quality.prdc.density >= 0
    assert len(quality.per_class_prdc) == 10 and all(p.recall == 0.0 for p in quality.per_class_prdc)
    assert "| precision / recall |" in report and "| 7 | " in report
    # Augmentation value: all 4,500 real training digits, then + as many generated ones, those beyond the
    # 12 per class evaluated drawn with further seeds. (One multiple here: each arm costs 3 trainings.)
    arms = quality.augmentation
    assert [(a.synthetic_multiple, a.real_samples, a.synthetic_samples) for a in arms] == [
        (0.0, 4500, 0), (1.0, 4500, 4500)
    ]  # fmt: skip
    for arm in arms:
        assert len(arm.runs) == 3 and arm.accuracy == pytest.approx(np.mean(arm.runs))
        assert all(0 <= run <= 1 for run in arm.runs)
    assert 0 < quality.augmentation_seconds < quality.evaluation_seconds
    assert "| real alone |" in report and "| real + 1x generated |" in report
    assert (version_dir / QUALITY_REPORT).read_text() == report
    assert not list(version_dir.glob(".*"))  # no temp files left behind


def test_augmentation_value_on_a_per_class_share_of_the_real_split(models):
    quality, report = evaluate(
        models["diverse"], samples_per_class=12, cache_dir=models["cache"], judge_config=TINY,
        probe_config=TINY, write=False, augmentation_multiples=(2.0,), augmentation_real_per_class=20,
    )  # fmt: skip
    # 20 real digits per class, then + 2x as many generated: 24 more of each class than the 12 evaluated.
    arms = quality.augmentation
    assert [(a.synthetic_multiple, a.real_samples, a.synthetic_samples) for a in arms] == [
        (0.0, 200, 0), (2.0, 200, 400)
    ]  # fmt: skip
    assert "CNN trained on the 200 real training images" in report
    with pytest.raises(EvaluateError, match="augmentation-real-per-class"):
        evaluate(models["diverse"], write=False, augmentation_real_per_class=0, cache_dir=models["cache"])


def test_evaluate_without_write_leaves_the_directory_alone(models):
    version_dir = models["diverse"]
    card_before = (version_dir / CARD_FILE).read_bytes()
    collapsed = Quality.model_validate(json.loads((models["collapsed"] / CARD_FILE).read_text())["quality"])

    quality, _ = evaluate(
        version_dir, samples_per_class=12, cache_dir=models["cache"], judge_config=TINY, probe_config=TINY,
        write=False, augmentation=False, bootstrap_resamples=0,
    )  # fmt: skip

    assert (version_dir / CARD_FILE).read_bytes() == card_before
    assert not (version_dir / QUALITY_REPORT).exists()
    assert quality.diversity_ratio > 0.1 > collapsed.diversity_ratio
    assert quality.pixel_diversity_ratio > 0.1
    assert quality.augmentation is None and quality.augmentation_seconds is None  # skipped
    assert quality.intervals is None and quality.kid is not None  # bootstrap_resamples=0: no intervals


def test_progress_counts_every_step_it_announced(models, monkeypatch):
    # The bar's total is worked out before the run; a step left uncounted would stall it short of 100%.
    from trainer.evaluation import pipeline

    finished = []
    count = lambda self, *exc: finished.append((self.done, self.total))  # noqa: E731
    monkeypatch.setattr(pipeline._Steps, "__exit__", count)
    for augmentation in (False, True):
        evaluate(
            models["diverse"], samples_per_class=12, cache_dir=models["cache"], judge_config=TINY,
            probe_config=TINY, write=False, augmentation=augmentation, augmentation_real_per_class=6,
            probe_runs=1, progress=True,
        )  # fmt: skip
    assert finished == [(2 + 2 + 1, 5), (2 + 2 + 3 + 1, 8)]


def test_report_of_a_card_evaluated_before_prdc_and_augmentation(models):
    card = ModelCard.model_validate_json((models["diverse"] / CARD_FILE).read_text())
    old = Quality(
        samples_per_class=10, label_accuracy=0.9, per_class_accuracy=[0.9] * 10, judge_test_accuracy=0.98,
        fid=5.0, fid_floor=4.0, fid_ratio=1.25, gan_train_accuracy=0.9, real_train_accuracy=0.95,
        diversity_ratio=0.9, mode_collapse=False, evaluated_at=datetime.now(UTC),
    )  # fmt: skip
    report = render_report(card, old)
    assert "precision" not in report and "real alone" not in report
    assert "| class | label accuracy | diversity |\n|---|---|---|\n| 0 | 90.0% | n/a |" in report


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
    with pytest.raises(EvaluateError, match="multiples must be positive"):
        evaluate(version_dir, augmentation_multiples=(1.0, 0.0), cache_dir=models["cache"])
    with pytest.raises(EvaluateError, match="prdc_k"):
        evaluate(version_dir, prdc_k=0, cache_dir=models["cache"])
    with pytest.raises(EvaluateError, match="no model.json"):
        evaluate(tmp_path / "nothing", cache_dir=models["cache"])


def test_the_exported_judge_is_the_keras_judge_and_the_service_filters_with_it(models, mnist5k, tmp_path):
    from cgan_contract import judge_signature, runner
    from service.config import Settings
    from service.metrics import Metrics
    from service.models import ModelRegistry
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


def test_worth_is_measured_recorded_and_drawn(models, tmp_path, monkeypatch):
    import shutil

    from trainer.evaluation import pipeline

    version_dir = tmp_path / "worth" / "1"
    shutil.copytree(models["diverse"], version_dir)
    finished = []
    monkeypatch.setattr(
        pipeline._Steps, "__exit__", lambda self, *exc: finished.append((self.done, self.total))
    )
    quality, report = evaluate(
        version_dir, samples_per_class=12, cache_dir=models["cache"], judge_config=TINY, probe_config=TINY,
        augmentation=False, probe_runs=1, progress=True, bootstrap_resamples=20,
        worth=True, worth_real_per_class=10, worth_multiples=(1.0, 3.0), worth_fractions=(0.5, 1.0),
    )  # fmt: skip
    worth = quality.worth
    assert worth.real_samples == 100 and worth.seconds > 0
    assert [(p.fraction, p.samples) for p in worth.curve] == [(0.5, 50), (1.0, 100)]
    # 3x needs 30 generated digits per class, 18 more than the 12 evaluated: drawn with further seeds.
    assert [(s.multiple, s.samples) for s in worth.synthetic] == [(1.0, 100), (3.0, 300)]
    assert all(len(p.runs) == 1 for p in (*worth.curve, *worth.synthetic))
    assert "## Worth in real images" in report and "| 3x | 300 |" in report
    # On the card, in quality.md, and as a figure; two probes per point, each a step of the bar.
    card = ModelCard.model_validate_json((version_dir / CARD_FILE).read_text())
    assert card.quality.worth == worth
    assert (version_dir / QUALITY_REPORT).read_text() == report
    assert (version_dir / "worth.png").read_bytes()[:4] == b"\x89PNG"
    assert finished == [(2 + 2 + 4 + 1, 9)]


def test_evaluate_worth_and_bootstrap_flags(monkeypatch, tmp_path, capsys):
    from trainer.cli import main

    seen = {}
    monkeypatch.setattr("trainer.cli.evaluate", lambda model_dir, **options: (seen.update(options), "r"))
    argv = ["evaluate", str(tmp_path), "--worth", "--worth-multiples", "1,4", "--worth-fractions", "0.25,1"]
    assert main([*argv, "--worth-real-per-class", "30", "--bootstrap", "50"]) == 0
    assert seen["worth"] is True and seen["worth_multiples"] == (1.0, 4.0)
    assert seen["worth_fractions"] == (0.25, 1.0) and seen["worth_real_per_class"] == 30
    assert seen["bootstrap_resamples"] == 50
    assert main(["evaluate", str(tmp_path)]) == 0
    assert seen["worth"] is False and seen["bootstrap_resamples"] == 200
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(tmp_path), "--worth-multiples", "1,two"])
    assert exit_.value.code == 2 and "comma-separated numbers" in capsys.readouterr().err
    for bad, message in (
        ({"worth_fractions": (0.5, 1.5)}, "--worth-fractions"),
        ({"worth_multiples": (0.0,)}, "--worth-multiples"),
        ({"worth_real_per_class": 0}, "--worth-real-per-class"),
        ({"bootstrap_resamples": -1}, "--bootstrap"),
    ):
        with pytest.raises(EvaluateError, match=message):
            EvalOptions(**bad)
