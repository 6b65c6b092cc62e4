"""``cgan-train evaluate``: score an exported generator and record the result on its card.

The steps, each its own function: open the version directory (card, digest, onnxruntime session), load the
dataset the card names, get the judge, generate ``samples_per_class`` images per class through
:func:`cgan_contract.runner.generate` (what the service serves), then measure (:mod:`.scores`), measure
the augmentation value (:mod:`.augmentation`, skippable: it costs the most probe trainings), with
``--worth`` the worth in real images (:mod:`.worth`), and write (:mod:`.report`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cgan_contract import (
    CARD_FILE,
    INPUT_NOISE,
    JUDGE_FILE,
    MODEL_FILE,
    OUTPUT_IMAGE,
    PRDC,
    ModelCard,
    Quality,
    read_card,
    request_seeds,
    runner,
    version_dirs,
)
from cgan_contract.card import Intervals, Worth
from trainer.artifacts import write_png
from trainer.data import LOADERS, DataError, Dataset, Split, load_dataset
from trainer.evaluation.augmentation import AUGMENTATION_MULTIPLES, augmentation_value, synthetic_counts
from trainer.evaluation.code_sweeps import NAME_MIN_LABEL_ACCURACY, evaluated_codes, traversal_grid
from trainer.evaluation.intervals import BOOTSTRAP_RESAMPLES, LEVEL, distance_figures
from trainer.evaluation.judge import (
    JUDGE_CONFIG,
    PROBE_CONFIG,
    CNNConfig,
    Judge,
    fit_cnn,
    load_or_train_judge,
    predict_labels,
)
from trainer.evaluation.judge_export import export_judge
from trainer.evaluation.report import (
    render_codes,
    render_report,
    traversal_file,
    write_quality,
    write_report,
)
from trainer.evaluation.scores import (
    COLLAPSE_THRESHOLD,
    PRDC_K,
    diversity,
    frechet_distance,
    label_accuracy,
    matched_counts,
    mode_collapse,
    per_class_accuracy,
    prdc,
    prdc_per_class,
    take_per_class,
)
from trainer.evaluation.worth import (
    WORTH_FIGURE,
    WORTH_FRACTIONS,
    WORTH_MULTIPLES,
    worth_in_real_images,
    write_worth_figure,
)
from trainer.files import sha256_file

log = logging.getLogger(__name__)


class EvaluateError(DataError):
    """The model directory cannot be evaluated; a one-line message for the user (a DataError, so the CLI's
    existing handling prints it)."""


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate; the defaults are what ``cgan-train evaluate`` and QUALITY.md use."""

    samples_per_class: int = 1000
    #: Image i of the generated set uses noise seed ``seed + i``; probe seeds and real subsets follow it.
    seed: int = 0
    data_dir: Path | None = None
    cache_dir: Path | None = None
    judge_config: CNNConfig = JUDGE_CONFIG
    probe_config: CNNConfig = PROBE_CONFIG
    probe_runs: int = 3
    collapse_threshold: float = COLLAPSE_THRESHOLD
    #: For a generator with style codes: sweeps per code ((seed, label) pairs) and steps per sweep.
    code_sweeps: int = 1000
    code_steps: int = 9
    prdc_k: int = PRDC_K
    #: Measure the augmentation value (real alone vs real + generated); ``--no-augmentation`` skips it.
    augmentation: bool = True
    augmentation_multiples: tuple[float, ...] = AUGMENTATION_MULTIPLES
    #: The augmentation value's real arm: this many real training images per class (a seeded choice, the
    #: real-train set's when equal to ``samples_per_class``), or None for the whole split. On a 60k split
    #: the whole-split arms train on up to 180k images, about an hour of probe training on 2 cores.
    augmentation_real_per_class: int | None = None
    #: Worth in real images (:mod:`.worth`, ``--worth``): GAN-train at these multiples of the real
    #: training split against a real learning curve at these fractions of it, ``probe_runs`` seeds each.
    #: Off by default: it trains (multiples + fractions) x probe_runs probes, 42 at the defaults.
    worth: bool = False
    worth_multiples: tuple[float, ...] = WORTH_MULTIPLES
    worth_fractions: tuple[float, ...] = WORTH_FRACTIONS
    #: The worth measurement's real split: this many real training images per class (a seeded choice, as
    #: for the augmentation value), or None for the whole split.
    worth_real_per_class: int | None = None
    #: Resamples of the bootstrap intervals of FID and KID (:mod:`.intervals`); 0 leaves them out.
    bootstrap_resamples: int = BOOTSTRAP_RESAMPLES
    #: A progress bar on stderr (shown only when it is a terminal): ``cgan-train evaluate`` without --quiet.
    progress: bool = False

    def __post_init__(self) -> None:
        if self.samples_per_class < 2:
            raise EvaluateError("--samples-per-class must be at least 2 (diversity needs pairs)")
        if self.probe_runs < 1:
            raise EvaluateError("--probe-runs must be at least 1")
        if self.code_sweeps < 1:
            raise EvaluateError("--code-sweeps must be at least 1")
        if self.code_steps < 3:
            raise EvaluateError("--code-steps must be at least 3 (a rank correlation needs them)")
        if self.prdc_k < 1:
            raise EvaluateError("prdc_k must be at least 1")
        if any(not m > 0 for m in self.augmentation_multiples):
            raise EvaluateError("augmentation multiples must be positive")
        if not self.worth_multiples or any(not m > 0 for m in self.worth_multiples):
            raise EvaluateError("--worth-multiples must be positive numbers")
        if not self.worth_fractions or any(not 0 < f <= 1 for f in self.worth_fractions):
            raise EvaluateError("--worth-fractions must be numbers in (0, 1]")
        if self.worth_real_per_class is not None and self.worth_real_per_class < 1:
            raise EvaluateError("--worth-real-per-class must be at least 1")
        if self.bootstrap_resamples < 0:
            raise EvaluateError("--bootstrap must be at least 0")
        if self.augmentation_real_per_class is not None and self.augmentation_real_per_class < 1:
            raise EvaluateError("--augmentation-real-per-class must be at least 1")


# --- the exported generator -----------------------------------------------------------------------------


def sample(
    model_path: Path,
    labels: np.ndarray | Sequence[int],
    seed: int,
    latent_dim: int | None = None,
    batch_size: int = 1000,
    session=None,
    code_ranges: list[tuple[float, float]] | None = None,
) -> np.ndarray:
    """Generate one uint8 image ``[N, H, W, C]`` per label; image i uses the noise of seed ``seed + i``
    (and, for a generator with style codes, ``code_ranges`` given, that seed's codes)."""
    sess = session or runner.open_session(Path(model_path))
    if latent_dim is None:
        shape = {i.name: i.shape for i in sess.get_inputs()}.get(INPUT_NOISE)
        if not shape or len(shape) != 2 or not isinstance(shape[1], int):
            raise EvaluateError(f"{model_path}: input {INPUT_NOISE!r} has no fixed latent size ({shape})")
        latent_dim = shape[1]
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) == 0:
        out = sess.get_outputs()[0].shape
        return np.zeros((0, *[d if isinstance(d, int) else 0 for d in out[1:]]), np.uint8)
    try:
        seeds = request_seeds(seed, len(labels))
    except ValueError as exc:
        raise EvaluateError(f"--seed {seed}: {exc}") from None
    images = runner.generate(sess, labels, seeds, latent_dim, batch_size=batch_size, code_ranges=code_ranges)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
        raise EvaluateError(
            f"{model_path}: output {OUTPUT_IMAGE!r} must be uint8 [N, H, W, C], got {images.dtype} "
            f"{list(images.shape)} for {len(labels)} labels"
        )
    return images


def resolve_model_dir(model_dir: Path) -> Path:
    """A version directory, or a model directory whose newest version is meant."""
    model_dir = Path(model_dir)
    if (model_dir / CARD_FILE).is_file():
        return model_dir
    versions = version_dirs(model_dir)
    if versions and (versions[-1][1] / CARD_FILE).is_file():
        return versions[-1][1]
    raise EvaluateError(f"{model_dir} holds no {CARD_FILE} (expected MODELS_DIR/<name>/<version>)")


def open_version(model_dir: Path) -> tuple[Path, ModelCard, Path]:
    """``(version_dir, card, model path)`` of a version whose ``model.onnx`` matches its card's digest."""
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
    return version_dir, card, model_path


def dataset_for(card: ModelCard, data_dir) -> Dataset:
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


# --- evaluation -----------------------------------------------------------------------------------------


def evaluate(
    model_dir: Path, options: EvalOptions | None = None, *, write: bool = True, **overrides: Any
) -> tuple[Quality, str]:
    """Score the exported generator in ``model_dir``; with ``write``, record it on the card and in
    ``quality.md``. ``overrides`` are :class:`EvalOptions` fields. Returns the quality section and the
    markdown report."""
    started = time.perf_counter()
    opts = dataclasses.replace(options or EvalOptions(), **overrides)
    version_dir, card, model_path = open_version(model_dir)
    dataset = dataset_for(card, opts.data_dir)
    with _Steps(opts, card) as step:
        return _evaluate(opts, version_dir, card, model_path, dataset, write, started, step)


class _Steps:
    """The evaluation's progress, one step per stage and per probe training (most of the time goes there),
    as a tqdm bar on stderr when it is a terminal."""

    def __init__(self, opts: EvalOptions, card: ModelCard) -> None:
        from tqdm import tqdm

        arms = 1 + len(opts.augmentation_multiples) if opts.augmentation else 0
        worth = len(opts.worth_multiples) + len(opts.worth_fractions) if opts.worth else 0
        total = 2 + opts.probe_runs * (2 + arms + worth) + bool(card.codes) + 1
        self.total = total
        self.done = 0
        self.bar = tqdm(total=total, desc="evaluate", unit="step", disable=None if opts.progress else True)

    def __call__(self, done: str) -> None:
        self.done += 1
        self.bar.set_postfix_str(done, refresh=False)
        self.bar.update(1)

    def __enter__(self) -> _Steps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


def _evaluate(
    opts: EvalOptions,
    version_dir: Path,
    card: ModelCard,
    model_path: Path,
    dataset: Dataset,
    write: bool,
    started: float,
    step: Callable[[str], None],
) -> tuple[Quality, str]:
    judge = load_or_train_judge(dataset, opts.cache_dir, opts.judge_config)
    step("judge")
    log.info(
        "judge %s (test accuracy %.4f)", "loaded" if judge.from_cache else "trained", judge.test_accuracy
    )
    labels = np.repeat(np.arange(dataset.num_classes, dtype=np.int64), opts.samples_per_class)
    session = runner.open_session(model_path)
    ranges = card.code_ranges
    images = sample(model_path, labels, opts.seed, card.latent_dim, session=session, code_ranges=ranges)
    images = images[..., 0]
    if images.shape[1:] != dataset.train.images.shape[1:]:
        raise EvaluateError(f"generator makes {list(images.shape[1:])} images, data is 28x28")
    step("samples")

    quality = measure(judge, dataset, images, labels, opts, step)
    if opts.augmentation:
        aug_started = time.perf_counter()
        real_images, real_labels = augmentation_real(dataset, opts)
        pool_images, pool_labels = synthetic_pool(model_path, card, real_labels, images, labels, opts)
        arms = augmentation_value(
            real_images,
            real_labels,
            pool_images,
            pool_labels,
            dataset.num_classes,
            _ticking_probe(dataset, opts, step, "augmentation probe"),
            opts.probe_config,
            opts.augmentation_multiples,
            opts.probe_runs,
        )
        seconds = round(time.perf_counter() - aug_started, 1)
        quality = quality.model_copy(update={"augmentation": arms, "augmentation_seconds": seconds})
    if opts.worth:
        quality = quality.model_copy(
            update={"worth": measure_worth(model_path, card, dataset, images, labels, opts, step)}
        )
    codes, figures = None, []
    if card.codes:
        named = quality.label_accuracy >= NAME_MIN_LABEL_ACCURACY
        codes, figures = evaluated_codes(
            session, card, opts.code_sweeps, opts.code_steps, opts.seed, name=named
        )
        step("style codes")
    quality = quality.model_copy(update={"evaluation_seconds": round(time.perf_counter() - started, 1)})
    report = render_report(card, quality)
    if codes is not None:
        report += render_codes(codes, figures, opts.code_sweeps, opts.code_steps, named)
    if write:
        # The judge these figures come from goes beside the generator, for the service's min_confidence.
        export_judge(judge, version_dir, card, images[:: max(1, len(images) // 256)])
        write_quality(version_dir, quality, codes)
        if quality.worth is not None:
            write_worth_figure(quality.worth, version_dir / WORTH_FIGURE)
        write_report(version_dir, report)
        for j in range(len(card.codes)):
            grid = traversal_grid(session, card, j, opts.code_steps, opts.seed)
            write_png(version_dir / traversal_file(j), grid)
    step("written" if write else "done")
    return quality, report


def _ticked(accuracy: float, step: Callable[[str], None], what: str) -> float:
    step(what)
    return accuracy


def export_judge_only(model_dir: Path, options: EvalOptions | None = None, **overrides: Any) -> Path:
    """Export the judge of ``model_dir`` (``cgan-train export-judge``) without measuring again: for a model
    evaluated before evaluate exported judges. Returns the judge file."""
    opts = dataclasses.replace(options or EvalOptions(), **overrides)
    version_dir, card, model_path = open_version(model_dir)
    judge = load_or_train_judge(dataset_for(card, opts.data_dir), opts.cache_dir, opts.judge_config)
    labels = np.repeat(np.arange(card.num_classes, dtype=np.int64), 16)
    images = sample(model_path, labels, opts.seed, latent_dim=card.latent_dim, code_ranges=card.code_ranges)
    export_judge(judge, version_dir, card, images)
    return version_dir / JUDGE_FILE


def augmentation_real(dataset: Dataset, opts: EvalOptions) -> tuple[np.ndarray, np.ndarray]:
    """The augmentation value's real arm: the whole training split, or ``augmentation_real_per_class``
    images of each class chosen like the real-train set (same seed, so the same images at equal sizes)."""
    return real_split(dataset, opts.augmentation_real_per_class, opts.seed)


def real_split(dataset: Dataset, per_class: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The whole training split, or ``per_class`` images of each class (fewer where a class has fewer)."""
    train = dataset.train
    if per_class is None:
        return train.images, train.labels
    return real_subset(dataset, matched_counts(train.labels, per_class, dataset.num_classes), seed)


def measure_worth(
    model_path: Path,
    card: ModelCard,
    dataset: Dataset,
    images: np.ndarray,
    labels: np.ndarray,
    opts: EvalOptions,
    step: Callable[[str], None],
) -> Worth:
    """Worth in real images (:mod:`.worth`) of the generator, with the seconds it took."""
    started = time.perf_counter()
    real_images, real_labels = real_split(dataset, opts.worth_real_per_class, opts.seed)
    largest = max(opts.worth_multiples)
    pool_images, pool_labels = synthetic_pool(model_path, card, real_labels, images, labels, opts, largest)
    worth = worth_in_real_images(
        real_images,
        real_labels,
        pool_images,
        pool_labels,
        dataset.num_classes,
        _ticking_probe(dataset, opts, step, "worth probe"),
        opts.probe_config,
        opts.worth_multiples,
        opts.worth_fractions,
        opts.probe_runs,
        opts.seed,
    )
    return worth.model_copy(update={"seconds": round(time.perf_counter() - started, 1)})


def real_subset(dataset: Dataset, counts: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``counts[c]`` real training images of each class c, a choice seeded by ``seed``: the real-train set
    and the augmentation value's real arm, so equal counts pick the same images."""
    picked = take_per_class(dataset.train.labels, counts, np.random.default_rng(seed))
    return dataset.train.images[picked], dataset.train.labels[picked]


def synthetic_pool(
    model_path: Path,
    card: ModelCard,
    real_labels: np.ndarray,
    images: np.ndarray,
    labels: np.ndarray,
    opts: EvalOptions,
    multiple: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The generated images the augmentation arms (or the worth measurement) draw from: the evaluated set,
    plus more of each class where ``multiple`` (default: the largest augmentation multiple) of the real set
    needs more (their seeds continue after it)."""
    multiple = max(opts.augmentation_multiples) if multiple is None else multiple
    need = synthetic_counts(real_labels, multiple, card.num_classes)
    extra = np.maximum(need - opts.samples_per_class, 0)
    if not extra.any():
        return images, labels
    extra_labels = np.repeat(np.arange(card.num_classes, dtype=np.int64), extra)
    first = opts.seed + len(labels)
    more = sample(model_path, extra_labels, first, latent_dim=card.latent_dim, code_ranges=card.code_ranges)
    more = more[..., 0]
    return np.concatenate([images, more]), np.concatenate([labels, extra_labels])


def _ticking_probe(dataset: Dataset, opts: EvalOptions, step: Callable[[str], None], what: str):
    """The probe the augmentation and worth measurements train: run ``run`` seeded ``opts.seed + run``,
    each training one tick of the progress."""
    return lambda x, y, config, run: _ticked(
        probe_accuracy(dataset, x, y, config, opts.seed + run), step, what
    )


def probe_accuracy(
    dataset: Dataset, train_images: np.ndarray, train_labels: np.ndarray, config: CNNConfig, seed: int
) -> float:
    """Accuracy on the real test split of a fresh probe (``config`` with ``seed``) trained on the images."""
    model = fit_cnn(train_images, train_labels, dataset.num_classes, dataclasses.replace(config, seed=seed))
    return label_accuracy(predict_labels(model, dataset.test.images), dataset.test.labels)


def measure(
    judge: Judge,
    dataset: Dataset,
    images: np.ndarray,
    labels: np.ndarray,
    opts: EvalOptions,
    step: Callable[[str], None] = lambda done: None,
) -> Quality:
    """Every quality figure of generated ``images`` (uint8 ``[N, H, W]``) of ``labels``."""
    num_classes, test = dataset.num_classes, dataset.test
    gen_pred, gen_feat = judge.predict(images)

    # Matched sets: the same per-class counts of generated and of real training images.
    counts = matched_counts(dataset.train.labels, opts.samples_per_class, num_classes)
    gen_idx = take_per_class(labels, counts)
    real_images, real_labels = real_subset(dataset, counts, opts.seed)
    _, real_feat = judge.predict(real_images)
    _, test_feat = judge.predict(test.images)
    fid = frechet_distance(gen_feat[gen_idx], test_feat)
    floor = frechet_distance(real_feat, test_feat)

    # Precision/recall/density/coverage on the same matched sets: equal sizes on both sides, as k-NN
    # radii depend on the sample count (the test split is too small for it: 50 per class in mnist-5k).
    gen_matched_feat, gen_matched_labels = gen_feat[gen_idx], labels[gen_idx]
    overall = prdc(real_feat, gen_matched_feat, opts.prdc_k)
    per_class = prdc_per_class(
        real_feat, real_labels, gen_matched_feat, gen_matched_labels, num_classes, opts.prdc_k
    )

    distances = matched_distances(
        gen_matched_feat, gen_matched_labels, real_feat, real_labels, test_feat, test, num_classes, opts
    )

    runs = range(opts.probe_runs)
    probe, seed = opts.probe_config, opts.seed
    gan_runs = [
        _ticked(probe_accuracy(dataset, images[gen_idx], labels[gen_idx], probe, seed + r), step, "GAN-train")
        for r in runs
    ]
    real_runs = [
        _ticked(probe_accuracy(dataset, real_images, real_labels, probe, seed + r), step, "real-train")
        for r in runs
    ]

    ratios = diversity(gen_feat, labels, test_feat, test.labels, num_classes)
    flat = test.images.reshape(len(test), -1) / 255.0
    pixel_ratios = diversity(images.reshape(len(images), -1) / 255.0, labels, flat, test.labels, num_classes)
    defined = [r for r in ratios if not np.isnan(r)]
    if not defined:
        raise EvaluateError(f"{dataset.name}: no class has two test images to measure diversity against")

    return Quality(
        samples_per_class=opts.samples_per_class,
        label_accuracy=label_accuracy(gen_pred, labels),
        per_class_accuracy=per_class_accuracy(gen_pred, labels, num_classes),
        judge_test_accuracy=judge.test_accuracy,
        fid=fid,
        fid_floor=floor,
        fid_ratio=fid / max(floor, 1e-12),
        gan_train_accuracy=float(np.mean(gan_runs)),
        real_train_accuracy=float(np.mean(real_runs)),
        gan_train_runs=gan_runs,
        real_train_runs=real_runs,
        diversity_ratio=min(defined),
        mode_collapse=mode_collapse(ratios, opts.collapse_threshold),
        evaluated_at=datetime.now(UTC),
        seed=opts.seed,
        matched_samples=int(counts.sum()),
        test_samples=len(test),
        # JSON has no NaN: a class without two real test images has no ratio.
        per_class_diversity=[None if np.isnan(r) else r for r in ratios],
        pixel_diversity_ratio=float(np.nanmin(pixel_ratios)),
        collapse_threshold=opts.collapse_threshold,
        feature_space=f"judge penultimate layer ({opts.judge_config.dense} units)",
        judge_file=judge.path.name if judge.path else None,
        prdc=PRDC(**overall._asdict()),
        per_class_prdc=[None if score is None else PRDC(**score._asdict()) for score in per_class],
        prdc_k=opts.prdc_k,
        **distances,
    )


def matched_distances(
    gen_feat: np.ndarray,
    gen_labels: np.ndarray,
    real_feat: np.ndarray,
    real_labels: np.ndarray,
    test_feat: np.ndarray,
    test: Split,
    num_classes: int,
    opts: EvalOptions,
) -> dict[str, Any]:
    """KID and FID at matched sizes, and the bootstrap intervals of every distance figure: the
    :class:`~cgan_contract.Quality` fields they fill.

    ``gen_*`` and ``real_*`` are the matched generated and real training sets (equal per-class counts). For
    the matched figures every side is cut to the same count per class, the smallest of the three (a seeded
    choice, the same test images for score and floor): mnist-5k's 50 test digits per class make it 500
    images a side. FID's bias depends on those sizes, so only figures at equal sizes compare; KID has none.
    """
    counts = np.minimum.reduce(
        [
            np.bincount(labels, minlength=num_classes)[:num_classes]
            for labels in (gen_labels, real_labels, test.labels)
        ]
    )
    rng = np.random.default_rng(opts.seed)
    g, r, t = (take_per_class(labels, counts, rng) for labels in (gen_labels, real_labels, test.labels))
    resamples, seed = opts.bootstrap_resamples, opts.seed
    matched, matched_iv = distance_figures(
        gen_feat[g],
        gen_labels[g],
        real_feat[r],
        real_labels[r],
        test_feat[t],
        test.labels[t],
        resamples,
        seed,
    )
    intervals = None
    if resamples:
        # The first-meaning figures' intervals: the matched generated set against the whole test split.
        _, whole_iv = distance_figures(
            gen_feat, gen_labels, real_feat, real_labels, test_feat, test.labels, resamples, seed, False
        )
        intervals = Intervals(
            level=LEVEL,
            resamples=resamples,
            seed=seed,
            **whole_iv,
            **{f"{name}_matched": iv for name, iv in matched_iv.items() if name.startswith("fid")},
            **{name: iv for name, iv in matched_iv.items() if name.startswith("kid")},
        )
    return {
        "kid_samples": int(counts.sum()),
        "kid": matched["kid"],
        "kid_floor": matched["kid_floor"],
        "kid_ratio": matched["kid_ratio"],
        "fid_matched": matched["fid"],
        "fid_floor_matched": matched["fid_floor"],
        "fid_ratio_matched": matched["fid_ratio"],
        "intervals": intervals,
    }
