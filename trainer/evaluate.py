"""``python -m trainer evaluate``: score an exported generator and record the result on its card.

Everything runs on the exported ``model.onnx`` through onnxruntime, i.e. on exactly what the service serves.
With ``n = samples_per_class`` images generated per class (image ``i`` uses noise seed ``seed + i``, the
contract's rule) and a judge CNN trained on the dataset's real training split (:mod:`trainer.judge`):

* **label accuracy**: the judge's prediction vs the requested label, over all generated images and per class.
* **FID** (classifier-feature Fréchet distance, *not* Inception FID): Fréchet distance between Gaussians
  fitted to the judge's penultimate-layer features of a *matched* generated set and of the whole real test
  split. **FID floor**: the same distance from a *matched* set of real training images to the same test
  split, i.e. the score of a generator that reproduces its training data. The matched sets hold
  ``m_c = min(n, real training images of class c)`` images of each class c (generated and real alike), so
  both distances have the same sample sizes and class mix and the same finite-sample bias.
  ``fid_ratio = fid / fid_floor``: 1 is as good as the training data itself.
* **GAN-train vs real-train**: a fresh small CNN (:data:`trainer.judge.PROBE_CONFIG`, fixed epochs and seed)
  trained only on the matched generated set, accuracy on the real test split; next to the same CNN trained
  the same way on the matched real training set (same size, same per-class counts). For mnist-5k at
  ``n >= 450`` that is all 4,500 real training digits vs 4,500 generated ones. Both are the mean over
  ``probe_runs`` probe seeds: one probe's accuracy moves by about a point from seed to seed on mnist-5k's
  500 test digits, as much as the gap being measured.
* **diversity**: per class, mean pairwise Euclidean distance between judge features of generated images
  (at most :data:`DIVERSITY_MAX_PER_CLASS` of them) divided by the same for the real test images of that
  class. ``diversity_ratio`` is the minimum over classes; ``mode_collapse`` is set when it falls below
  ``collapse_threshold`` (default :data:`COLLAPSE_THRESHOLD`). The pixel-space ratio is recorded too.

The metric functions below take arrays only, so they can be checked on known cases without a GAN.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from service.contract import (
    CARD_FILE,
    INPUT_LABEL,
    INPUT_NOISE,
    MODEL_FILE,
    OUTPUT_IMAGE,
    ModelCard,
    Quality,
    noise,
    read_card,
    sha256_file,
    utcnow,
    version_dirs,
)
from trainer.data import DataError, Dataset, load_dataset
from trainer.judge import JUDGE_CONFIG, PROBE_CONFIG, CNNConfig, fit_cnn, load_or_train_judge, predict_labels

log = logging.getLogger(__name__)

#: A class whose generated images are less than half as spread out as real ones is flagged. Healthy
#: generators sit near 1 (GANs typically 0.7-1.0); a collapsed class is near 0.
COLLAPSE_THRESHOLD = 0.5
#: Pairwise distances are O(n^2); the mean over 1,000 images per class is already a precise estimate.
DIVERSITY_MAX_PER_CLASS = 1000
QUALITY_REPORT = "quality.md"


class EvaluateError(DataError):
    """The model directory cannot be evaluated; a one-line message for the user (a DataError, so the CLI's
    existing handling prints it)."""


# --- metrics: pure functions on arrays ------------------------------------------------------------------


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need at least 2 feature vectors [N, D], got shape {list(features.shape)}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance_from_stats(
    mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray
) -> float:
    """``|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2))`` for Gaussians N(mu1, C1), N(mu2, C2).

    ``tr((C1 C2)^(1/2))`` is computed as ``tr((S C2 S)^(1/2))`` with ``S = C1^(1/2)``: the same eigenvalues,
    but a symmetric PSD matrix, so ``eigh`` suffices and there is no complex round-off to discard.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    root1 = _psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    tr_sqrt = float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None))))
    diff = mu1 - mu2
    return max(0.0, float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``[N, D]`` (FID's formula)."""
    return frechet_distance_from_stats(*gaussian_stats(features_a), *gaussian_stats(features_b))


def label_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    if predicted.shape != labels.shape or len(labels) == 0:
        raise ValueError("predictions and labels must be non-empty and of equal shape")
    return float(np.mean(predicted == labels))


def per_class_accuracy(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float]:
    """Accuracy within each class; NaN for a class with no samples."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    out = []
    for c in range(num_classes):
        mask = labels == c
        out.append(float(np.mean(predicted[mask] == c)) if mask.any() else float("nan"))
    return out


def mean_pairwise_distance(x: np.ndarray) -> float:
    """Mean Euclidean distance over all unordered pairs of rows; NaN with fewer than two rows."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    n = len(x)
    if n < 2:
        return float("nan")
    sq = np.einsum("ij,ij->i", x, x)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0, None)
    upper = np.triu_indices(n, k=1)
    return float(np.mean(np.sqrt(d2[upper])))


def diversity(
    generated: np.ndarray,
    generated_labels: np.ndarray,
    real: np.ndarray,
    real_labels: np.ndarray,
    num_classes: int,
    max_per_class: int = DIVERSITY_MAX_PER_CLASS,
) -> list[float]:
    """Per class: mean pairwise distance among generated samples / the same among real samples.

    Rows may be features or flattened pixels. NaN where a class has fewer than two samples on either side
    or the real samples are all identical (no scale to compare with).
    """
    generated_labels, real_labels = np.asarray(generated_labels), np.asarray(real_labels)
    ratios = []
    for c in range(num_classes):
        gen = mean_pairwise_distance(generated[generated_labels == c][:max_per_class])
        ref = mean_pairwise_distance(real[real_labels == c][:max_per_class])
        ratios.append(gen / ref if ref > 0 else float("nan"))
    return ratios


def mode_collapse(ratios: Sequence[float], threshold: float = COLLAPSE_THRESHOLD) -> bool:
    """True when any class with a defined ratio is less diverse than ``threshold`` times the real data."""
    values = np.asarray(ratios, dtype=np.float64)
    values = values[~np.isnan(values)]
    return bool(values.size and values.min() < threshold)


def matched_counts(train_labels: np.ndarray, samples_per_class: int, num_classes: int) -> np.ndarray:
    """Per-class size of the matched sets: as many as were generated, capped by the real training count."""
    available = np.bincount(np.asarray(train_labels), minlength=num_classes)[:num_classes]
    return np.minimum(available, samples_per_class)


def take_per_class(
    labels: np.ndarray, counts: np.ndarray, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Indices of ``counts[c]`` items of each class c: the first ones, or a random choice given ``rng``."""
    labels = np.asarray(labels)
    picked = []
    for c, k in enumerate(counts):
        members = np.flatnonzero(labels == c)
        if rng is not None:
            members = rng.permutation(members)
        if len(members) < k:
            raise ValueError(f"class {c} has {len(members)} items, {k} requested")
        picked.append(members[:k])
    return np.concatenate(picked) if picked else np.zeros(0, np.int64)


# --- the exported generator -----------------------------------------------------------------------------


def _session(model_path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def sample(
    model_path: Path,
    labels: np.ndarray | Sequence[int],
    seed: int,
    latent_dim: int | None = None,
    batch_size: int = 1000,
    session=None,
) -> np.ndarray:
    """Generate one uint8 image ``[N, H, W, C]`` per label; image i uses the noise of seed ``seed + i``."""
    sess = session or _session(Path(model_path))
    if latent_dim is None:
        shape = {i.name: i.shape for i in sess.get_inputs()}.get(INPUT_NOISE)
        if not shape or len(shape) != 2 or not isinstance(shape[1], int):
            raise EvaluateError(f"{model_path}: input {INPUT_NOISE!r} has no fixed latent size ({shape})")
        latent_dim = shape[1]
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    z = noise(seed, len(labels), latent_dim)
    batches = []
    for start in range(0, len(labels), batch_size):
        end = start + batch_size
        (images,) = sess.run([OUTPUT_IMAGE], {INPUT_NOISE: z[start:end], INPUT_LABEL: labels[start:end]})
        batches.append(images)
    if not batches:
        out = sess.get_outputs()[0].shape
        return np.zeros((0, *[d if isinstance(d, int) else 0 for d in out[1:]]), np.uint8)
    images = np.concatenate(batches)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
        raise EvaluateError(
            f"{model_path}: output {OUTPUT_IMAGE!r} must be uint8 [N, H, W, C], got {images.dtype} "
            f"{list(images.shape)} for {len(labels)} labels"
        )
    return images


# --- evaluation -----------------------------------------------------------------------------------------


def resolve_model_dir(model_dir: Path) -> Path:
    """A version directory, or a model directory whose newest version is meant."""
    model_dir = Path(model_dir)
    if (model_dir / CARD_FILE).is_file():
        return model_dir
    versions = version_dirs(model_dir)
    if versions and (versions[-1][1] / CARD_FILE).is_file():
        return versions[-1][1]
    raise EvaluateError(f"{model_dir} holds no {CARD_FILE} (expected MODELS_DIR/<name>/<version>)")


def _dataset_for(card: ModelCard, data_dir) -> Dataset:
    from trainer.data import LOADERS

    # Datasets loaded from a directory are named after it, so a card can name something LOADERS lacks.
    name = card.dataset if card.dataset in LOADERS else "idx"
    if name == "idx" and not data_dir:
        raise EvaluateError(f"model was trained on {card.dataset!r}; pass --data-dir with that dataset")
    dataset = load_dataset(name, data_dir)
    if dataset.num_classes != card.num_classes:
        raise EvaluateError(
            f"{dataset.name} has {dataset.num_classes} classes, the model card {card.num_classes}"
        )
    if tuple(dataset.image_shape) != tuple(card.image_shape):
        raise EvaluateError(
            f"{dataset.name} images are {list(dataset.image_shape)}, the model's {list(card.image_shape)}"
        )
    if len(dataset.test) == 0:
        raise EvaluateError(f"{dataset.name} has no test split to compare against")
    return dataset


def _atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` in one rename, keeping its permissions (the server may run as another user)."""
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_quality(version_dir: Path, quality: Quality) -> None:
    """Set the card's ``quality`` section, leaving every other field as it was on disk."""
    card_path = version_dir / CARD_FILE
    original = card_path.read_text()
    raw = json.loads(original)
    raw["quality"] = quality.model_dump(mode="json")
    text = json.dumps(raw, indent=2, ensure_ascii=False) + ("\n" if original.endswith("\n") else "")
    ModelCard.model_validate_json(text)  # never leave a card the server would reject
    _atomic_write(card_path, text)


def _pct(x: float) -> str:
    return "n/a" if np.isnan(x) else f"{100 * x:.1f}%"


def _num(x: float) -> str:
    return "n/a" if np.isnan(x) else f"{x:.3g}"


def _spread(runs) -> str:
    return f" ± {100 * float(np.std(runs)):.1f}" if runs and len(runs) > 1 else ""


def _runs(runs) -> str:
    return f"; mean of {len(runs)} probe seeds" if runs and len(runs) > 1 else ""


def render_report(card: ModelCard, q: Quality) -> str:
    extra = q.model_extra or {}
    per_div = [float("nan") if d is None else d for d in extra.get("per_class_diversity") or []]
    per_div += [float("nan")] * (card.num_classes - len(per_div))
    worst = int(np.nanargmin(per_div)) if not np.all(np.isnan(per_div)) else None
    m, t = extra.get("matched_samples", "?"), extra.get("test_samples", "?")
    lines = [
        f"# Quality: {card.name} v{card.version} ({card.dataset})",
        "",
        f"{q.samples_per_class} generated images per class from `{MODEL_FILE}` (onnxruntime, noise seed "
        f"{extra.get('seed', '?')}); evaluated {q.evaluated_at:%Y-%m-%d %H:%M} UTC.",
        "",
        "| metric | value | what is compared |",
        "|---|---|---|",
        f"| label accuracy | {_pct(q.label_accuracy)} | judge's prediction vs requested label "
        f"(judge: {_pct(q.judge_test_accuracy)} on the real test split) |",
        f"| FID (judge features) | {_num(q.fid)} | {m} generated vs {t} real test |",
        f"| FID floor | {_num(q.fid_floor)} | {m} real train vs {t} real test |",
        f"| FID ratio | {_num(q.fid_ratio)} | FID / floor; 1 = as close as the training data |",
        f"| GAN-train accuracy | {_pct(q.gan_train_accuracy)}{_spread(extra.get('gan_train_runs'))} | "
        f"CNN trained on {m} generated, tested on real test{_runs(extra.get('gan_train_runs'))} |",
        f"| real-train accuracy | {_pct(q.real_train_accuracy)}{_spread(extra.get('real_train_runs'))} | "
        f"same CNN trained on {m} real train{_runs(extra.get('real_train_runs'))} |",
        f"| diversity ratio | {_num(q.diversity_ratio)}"
        + (f" (class {card.class_names[worst]})" if worst is not None else "")
        + " | within-class mean pairwise judge-feature distance, generated / real test (min over classes) |",
        f"| mode collapse | {'**YES**' if q.mode_collapse else 'no'} | any class ratio < "
        f"{extra.get('collapse_threshold', COLLAPSE_THRESHOLD)} |",
        "",
        "| class | label accuracy | diversity |",
        "|---|---|---|",
    ]
    for name, acc, div in zip(card.class_names, q.per_class_accuracy, per_div, strict=False):
        lines.append(f"| {name} | {_pct(acc)} | {_num(div)} |")
    return "\n".join(lines) + "\n"


def evaluate(
    model_dir: Path,
    samples_per_class: int = 1000,
    data_dir=None,
    cache_dir: Path | None = None,
    seed: int = 0,
    write: bool = True,
    judge_config: CNNConfig = JUDGE_CONFIG,
    probe_config: CNNConfig = PROBE_CONFIG,
    collapse_threshold: float = COLLAPSE_THRESHOLD,
    probe_runs: int = 3,
) -> tuple[Quality, str]:
    """Score the exported generator in ``model_dir``; with ``write``, record it on the card and in
    ``quality.md``. Returns the quality section and the markdown report."""
    started = time.perf_counter()
    if samples_per_class < 2:
        raise EvaluateError("--samples-per-class must be at least 2 (diversity needs pairs)")
    if probe_runs < 1:
        raise EvaluateError("--probe-runs must be at least 1")
    version_dir = resolve_model_dir(model_dir)
    try:
        card = read_card(version_dir)
    except ValueError as exc:
        raise EvaluateError(f"{version_dir / CARD_FILE} is not a valid model card: {exc}") from None
    model_path = version_dir / MODEL_FILE
    if not model_path.is_file():
        raise EvaluateError(f"{model_path} does not exist")
    if sha256_file(model_path) != card.sha256:
        raise EvaluateError(f"{model_path} does not match the sha256 on its card")
    dataset = _dataset_for(card, data_dir)
    num_classes = dataset.num_classes

    judge = load_or_train_judge(dataset, cache_dir, judge_config)
    log.info(
        "judge %s (test accuracy %.4f)", "loaded" if judge.from_cache else "trained", judge.test_accuracy
    )

    gen_labels = np.repeat(np.arange(num_classes, dtype=np.int64), samples_per_class)
    gen_images = sample(model_path, gen_labels, seed, latent_dim=card.latent_dim)[..., 0]
    if gen_images.shape[1:] != dataset.train.images.shape[1:]:
        raise EvaluateError(f"generator makes {list(gen_images.shape[1:])} images, data is 28x28")
    gen_pred, gen_feat = judge.predict(gen_images)

    counts = matched_counts(dataset.train.labels, samples_per_class, num_classes)
    gen_idx = take_per_class(gen_labels, counts)
    real_idx = take_per_class(dataset.train.labels, counts, np.random.default_rng(seed))
    _, real_feat = judge.predict(dataset.train.images[real_idx])
    test_pred, test_feat = judge.predict(dataset.test.images)

    fid = frechet_distance(gen_feat[gen_idx], test_feat)
    floor = frechet_distance(real_feat, test_feat)

    def probe_accuracy(images: np.ndarray, labels: np.ndarray, run: int) -> float:
        probe = dataclasses.replace(probe_config, seed=seed + run)
        model = fit_cnn(images, labels, num_classes, probe)
        return label_accuracy(predict_labels(model, dataset.test.images), dataset.test.labels)

    gan_runs = [probe_accuracy(gen_images[gen_idx], gen_labels[gen_idx], r) for r in range(probe_runs)]
    real_images, real_labels = dataset.train.images[real_idx], dataset.train.labels[real_idx]
    real_runs = [probe_accuracy(real_images, real_labels, r) for r in range(probe_runs)]
    gan_train, real_train = float(np.mean(gan_runs)), float(np.mean(real_runs))

    ratios = diversity(gen_feat, gen_labels, test_feat, dataset.test.labels, num_classes)
    flat = dataset.test.images.reshape(len(dataset.test), -1) / 255.0
    pixel_ratios = diversity(
        gen_images.reshape(len(gen_images), -1) / 255.0, gen_labels, flat, dataset.test.labels, num_classes
    )
    defined = [r for r in ratios if not np.isnan(r)]
    if not defined:
        raise EvaluateError(f"{dataset.name}: no class has two test images to measure diversity against")

    quality = Quality(
        samples_per_class=samples_per_class,
        label_accuracy=label_accuracy(gen_pred, gen_labels),
        per_class_accuracy=per_class_accuracy(gen_pred, gen_labels, num_classes),
        judge_test_accuracy=judge.test_accuracy,
        fid=fid,
        fid_floor=floor,
        fid_ratio=fid / max(floor, 1e-12),
        gan_train_accuracy=gan_train,
        real_train_accuracy=real_train,
        gan_train_runs=gan_runs,
        real_train_runs=real_runs,
        diversity_ratio=min(defined) if defined else float("nan"),
        mode_collapse=mode_collapse(ratios, collapse_threshold),
        evaluated_at=utcnow(),
        seed=seed,
        matched_samples=int(counts.sum()),
        test_samples=len(dataset.test),
        # JSON has no NaN: a class without two real test images has no ratio.
        per_class_diversity=[None if np.isnan(r) else r for r in ratios],
        pixel_diversity_ratio=float(np.nanmin(pixel_ratios)),
        collapse_threshold=collapse_threshold,
        feature_space=f"judge penultimate layer ({judge_config.dense} units)",
        judge_file=judge.path.name if judge.path else None,
        evaluation_seconds=round(time.perf_counter() - started, 1),
    )
    report = render_report(card, quality)
    if write:
        write_quality(version_dir, quality)
        _atomic_write(version_dir / QUALITY_REPORT, report)
    return quality, report
