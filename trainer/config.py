"""Training configuration, TF-free so that ``cgan-train --help`` never loads TensorFlow.

A run is described by one frozen :class:`TrainConfig`: the command line builds it with
:meth:`TrainConfig.for_dataset` (flags left out take the dataset's recipe from :data:`DATASET_DEFAULTS`),
``run.json`` stores it, and :func:`trainer.train.train` reads it. The network sizes a variant builds from
are a :class:`Spec`; the knobs of its objective and optimisers are a :class:`Recipe`.

Recipes: ``dense`` is always the classic article's (the baseline); ``conv`` is the one the measurements in
QUALITY.md support: hinge loss, spectral norm in D (the reparametrised form,
:class:`trainer.nets.blocks.SpectralNorm`), EMA generator, TTUR; for ``cgan`` also class-conditional
BatchNorm in G and a projection D with a real-only class head and a 0.3-weighted class term for G.
Translation DiffAugment stays on for the 4,500-digit mnist-5k and is off for the 60,000 Fashion images,
where it cost label accuracy and GAN-train. Conv recipes compute in bfloat16 where the CPU has it
(:func:`fast_compute_dtype`). ``infogan`` takes ``cgan``'s recipe for its arch plus
``num_codes`` style codes and Q's weight ``q_weight``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, replace
from pathlib import Path

import cgan_contract as contract

ARCHS = ("dense", "conv")


class ConfigError(Exception):
    """A flag combination that cannot train; the message is one line for the user."""


@dataclass(frozen=True)
class Spec:
    """Sizes that come from the dataset and the command line, never from constants in a variant."""

    latent_dim: int
    num_classes: int
    image_shape: tuple[int, int, int]
    arch: str


@dataclass(frozen=True)
class Recipe:
    """Training knobs. The defaults are the article's: BCE, Adam(2e-4, 0.5), nothing else."""

    loss: str = "bce"
    g_lr: float = 2e-4
    d_lr: float = 2e-4
    beta_1: float = 0.5
    beta_2: float = 0.999
    real_target: float = 1.0  # < 1 is one-sided label smoothing (BCE only)
    spectral_norm: bool = False
    augment_shift: int = 0
    augment_cutout: int = 0
    ema_decay: float = 0.0
    class_weight: float = 1.0  # class loss weight in D's objective (AC-GAN, and CGAN with aux_classifier)
    g_class_weight: float = 1.0  # class loss weight in G's objective (< 1 keeps diversity)
    classify_fake: bool = True  # AC-GAN: D also learns to classify fakes (the paper); False = real only
    aux_classifier: bool = False  # CGAN conv: a class head on the projection D, trained on real images
    cond_bn: bool = False  # conv arch: class-conditional BatchNorm in the generator
    g_width: int = 64  # conv arch: channels of the generator's middle layer (7x7 has 2x, 28x28 has 1/2x)
    d_width: int = 64  # conv arch: channels of the discriminator's last conv
    num_codes: int = 0  # InfoGAN: continuous style codes fed to G, uniform in [-1, 1], recovered by Q
    q_weight: float = 1.0  # InfoGAN: weight of Q's code-recovery MSE in both D's and G's objective
    margin: float = 0.3  # EBGAN: D pushes fake energies (per-image MSE, in [0, 4]) up to this
    pt_weight: float = 0.1  # EBGAN: weight of the pulling-away term in G's objective (the paper's 0.1)
    ae_condition: str = "input"  # EBGAN: the label enters D's autoencoder at the "input" or the "code"
    ae_code_dim: int = 64  # EBGAN: width of the autoencoder's code
    mismatch_weight: float = 0.0  # EBGAN: margin term on real images under a wrong label (0 = the paper)
    lecam_weight: float = 0.0  # LeCam regulariser on D's logits (Tseng et al. 2021); 0 = off
    lecam_decay: float = 0.99  # LeCam: EMA decay of the real and fake logit anchors
    jitter_degrees: float = 0.0  # real training images only: random rotation up to this many degrees
    jitter_zoom: float = 0.0  # real training images only: random scale in 1 ± this
    # conv arch: the dtype of the convolutions' and matmuls' arithmetic while training; weights, BatchNorm,
    # losses and the exported (EMA) generator stay float32. "bfloat16" runs on AMX/AVX512-BF16.
    compute_dtype: str = "float32"


ARTICLE = Recipe()

MODERN = Recipe(
    loss="hinge",
    g_lr=2e-4,
    d_lr=4e-4,
    beta_1=0.0,
    beta_2=0.9,
    spectral_norm=True,
    augment_shift=2,
    ema_decay=0.999,
)

MODERN_CGAN = replace(MODERN, cond_bn=True, aux_classifier=True, g_class_weight=0.3)

# EBGAN: margin, conditioning and mismatch negatives from bench/ebgan_conditioning.py (QUALITY.md); the
# conv one is MODERN's optimiser, EMA and DiffAugment with CGAN's class-conditional BatchNorm in G, and no
# spectral norm (the autoencoder must reconstruct, not only score).
EBGAN_DENSE = replace(ARTICLE, loss="ebgan", margin=0.3, ae_condition="input", mismatch_weight=1.0)
EBGAN_CONV = replace(
    MODERN,
    loss="ebgan",
    spectral_norm=False,
    cond_bn=True,
    margin=0.3,
    ae_condition="input",
    mismatch_weight=1.0,
)


_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def override_recipe(recipe: Recipe, pairs: list[str]) -> Recipe:
    """``recipe`` with ``FIELD=VALUE`` pairs (``cgan-train train --recipe``) on top, typed like the field."""
    fields = {f.name: f for f in dataclasses.fields(Recipe)}
    changes: dict[str, object] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or name not in fields:
            known = ", ".join(fields)
            raise ConfigError(f"--recipe {pair!r}: expected FIELD=VALUE with FIELD one of {known}")
        kind = type(getattr(recipe, name))
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                changes[name] = text.lower() in ("true", "1")
            else:
                changes[name] = kind(text)
        except ValueError:
            raise ConfigError(f"--recipe {pair!r}: {name} takes {_KINDS[kind]}") from None
    return replace(recipe, **changes)


LOSSES = ("bce", "hinge", "ebgan")
_POSITIVE = ("g_lr", "d_lr", "g_width", "d_width", "ae_code_dim")
_NON_NEGATIVE = (
    "augment_shift", "augment_cutout", "class_weight", "g_class_weight", "num_codes", "q_weight", "margin",
    "pt_weight", "mismatch_weight", "lecam_weight", "jitter_degrees",
)  # fmt: skip
_UNIT = ("beta_1", "beta_2", "ema_decay", "lecam_decay", "jitter_zoom")  # each in [0, 1)


def recipe_problem(recipe: Recipe, variant: str, arch: str) -> str | None:
    """What makes ``recipe`` untrainable for ``variant`` and ``arch`` (a ``--recipe`` value out of range),
    or None."""
    for name in _POSITIVE:
        if not getattr(recipe, name) > 0:
            return f"{name} must be positive, got {getattr(recipe, name)}"
    for name in _NON_NEGATIVE:
        if getattr(recipe, name) < 0:
            return f"{name} must be >= 0, got {getattr(recipe, name)}"
    for name in _UNIT:
        if not 0 <= getattr(recipe, name) < 1:
            return f"{name} must be in [0, 1), got {getattr(recipe, name)}"
    if not 0 < recipe.real_target <= 1:
        return f"real_target must be in (0, 1], got {recipe.real_target}"
    if recipe.loss not in LOSSES:
        return f"loss must be one of {', '.join(LOSSES)}, got {recipe.loss!r}"
    if (recipe.loss == "ebgan") != (variant == "ebgan"):
        return "loss=ebgan goes with --model ebgan and only there: its D scores energies, the others' logits"
    if recipe.lecam_weight and recipe.loss == "ebgan":
        return "lecam_weight needs a logit discriminator; EBGAN's scores energies"
    if recipe.compute_dtype not in COMPUTE_DTYPES:
        return f"compute_dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {recipe.compute_dtype!r}"
    if recipe.compute_dtype != "float32" and arch != "conv":
        return f"compute_dtype={recipe.compute_dtype} is for the conv arch; the dense one trains in float32"
    if recipe.compute_dtype != "float32" and not recipe.ema_decay:
        return f"compute_dtype={recipe.compute_dtype} needs ema_decay > 0: the EMA generator is exported"
    return None


COMPUTE_DTYPES = ("float32", "bfloat16")


def fast_compute_dtype(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """bfloat16 where the CPU multiplies it natively (AVX512-BF16 or AMX), else float32.

    On the default conv recipe it trains ~1.35x faster on a Sapphire Rapids core than float32 with the same
    fused kernels (BENCHMARKS.md, "Training throughput"); a CPU without those instructions would emulate it,
    slower than float32.
    """
    try:
        text = cpuinfo.read_text()
    except OSError:
        return "float32"
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split()}
    return "bfloat16" if {"avx512_bf16", "amx_bf16"} & flags else "float32"


#: InfoGAN's number of style codes unless a recipe says otherwise.
INFOGAN_CODES = 2


def recipe_for(variant: str, arch: str, augment_shift: int = 2) -> Recipe:
    """The recipe of a variant and arch; ``augment_shift`` is the conv recipe's DiffAugment translation.

    Conv recipes compute in :func:`fast_compute_dtype` (``run.json`` and the card record which)."""
    if variant == "infogan":
        # InfoGAN is CGAN's recipe (projection D, real-only class head, conditional BN for conv) plus codes.
        return replace(recipe_for("cgan", arch, augment_shift), num_codes=INFOGAN_CODES)
    if arch == "dense":
        return EBGAN_DENSE if variant == "ebgan" else ARTICLE
    base = {"cgan": MODERN_CGAN, "ebgan": EBGAN_CONV}.get(variant, MODERN)
    return replace(base, augment_shift=augment_shift, compute_dtype=fast_compute_dtype())


#: What ``cgan-train train --dataset X`` does when no other flag is given. 16,000 x 64 took 13.8 minutes
#: on 2 idle Sapphire Rapids cores (1,236 images/s, bfloat16; QUALITY.md, BENCHMARKS.md). Full MNIST
#: (60k, not available offline here, so not measured) follows Fashion: same size, no translation.
#: ``augment_shift`` is the conv recipe's DiffAugment translation in pixels: 0 for large datasets, where D
#: has enough real images.
DATASET_DEFAULTS: dict[str, dict[str, object]] = {
    "mnist-5k": {"variant": "cgan", "arch": "conv", "steps": 16000, "batch_size": 64, "augment_shift": 2},
    "mnist": {"variant": "cgan", "arch": "conv", "steps": 16000, "batch_size": 64, "augment_shift": 0},
    "fashion-mnist": {
        "variant": "cgan",
        "arch": "conv",
        "steps": 16000,
        "batch_size": 64,
        "augment_shift": 0,
    },
    "idx": {"variant": "cgan", "arch": "conv", "steps": 16000, "batch_size": 64, "augment_shift": 2},
}


@dataclass(frozen=True)
class TrainConfig:
    variant: str
    arch: str
    dataset: str
    steps: int
    batch_size: int
    latent_dim: int
    recipe: Recipe
    name: str
    out: Path = Path("models")
    work_dir: Path = Path("runs")
    data_dir: Path | None = None
    seed: int = 0
    checkpoint_every: int = 500
    sample_every: int = 500
    log_every: int = 50
    jit_compile: bool = False  # XLA-fused blocks; pays off for dense (for_dataset turns it on there)
    export: bool = True
    progress: bool = True

    @classmethod
    def for_dataset(cls, dataset: str, *, jit: bool = True, **flags: object) -> TrainConfig:
        """The dataset's recipe, with every flag that is not ``None`` on top (field names as keywords)."""
        given = {k: v for k, v in flags.items() if v is not None}
        defaults = DATASET_DEFAULTS.get(dataset, DATASET_DEFAULTS["idx"])
        variant = str(given.pop("variant", defaults["variant"]))
        arch = str(given.pop("arch", defaults["arch"]))
        given.setdefault("steps", defaults["steps"])
        given.setdefault("batch_size", defaults["batch_size"])
        given.setdefault("latent_dim", 100)
        given.setdefault("recipe", recipe_for(variant, arch, int(defaults["augment_shift"])))
        given.setdefault("name", f"{dataset}-{variant}-{arch}")
        # XLA pays off for the dense MLPs; for conv it measured no faster and compiles for minutes.
        given.setdefault("jit_compile", jit and arch == "dense")
        return cls(variant=variant, arch=arch, dataset=dataset, **given)  # type: ignore[arg-type]

    @property
    def run_dir(self) -> Path:
        return Path(self.work_dir) / self.name

    def validate(self) -> None:
        for flag in ("steps", "batch_size", "latent_dim", "checkpoint_every", "sample_every", "log_every"):
            if getattr(self, flag) <= 0:
                raise ConfigError(f"--{flag.replace('_', '-')} must be positive, got {getattr(self, flag)}")
        if not contract.valid_model_name(self.name):
            raise ConfigError(f"--name {self.name!r} must match {contract.MODEL_NAME_PATTERN}")
        problem = recipe_problem(self.recipe, self.variant, self.arch)
        if problem:
            raise ConfigError(f"--recipe {problem}")

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["out"], data["work_dir"] = str(self.out), str(self.work_dir)
        data["data_dir"] = str(self.data_dir) if self.data_dir else None
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}  # runs saved by older versions carry more
        data["recipe"] = Recipe(**data["recipe"])
        data["out"], data["work_dir"] = Path(data["out"]), Path(data["work_dir"])
        data["data_dir"] = Path(data["data_dir"]) if data["data_dir"] else None
        return cls(**data)
