"""Training configuration, TF-free so that ``cgan-train --help`` never loads TensorFlow.

A run is described by one frozen :class:`TrainConfig`: the command line builds it with
:meth:`TrainConfig.for_dataset` (flags left out take the dataset's recipe from :data:`DATASET_DEFAULTS`),
``run.json`` stores it, and :func:`trainer.train.train` reads it. The knobs of a variant's objective and
optimisers are a :class:`Recipe`, in sections (StudioGAN's layout): :class:`Optimiser`, :class:`Objective`,
:class:`Augmentation`, :class:`Conditioning`, :class:`Nets`, and the variant's own ``extras`` (a dataclass
its module declares, e.g. InfoGAN's style codes). Every knob has one name across the sections, so
``recipe.lecam_weight``, ``--recipe lecam_weight=0.3``, ``run.json`` and the model card all use it flat.

Recipes: ``dense`` is always the classic article's (:data:`ARTICLE`, the baseline); ``conv`` starts from
:data:`MODERN`, the one the measurements in QUALITY.md support: hinge loss, spectral norm in D (the
reparametrised form, :class:`trainer.nets.blocks.SpectralNorm`), EMA generator, TTUR. Each variant's module
says what it changes (its ``default_recipe``; CGAN's conv recipe adds class-conditional BatchNorm in G and a
projection D with a real-only class head) and what it refuses (its ``recipe_problem``); :func:`recipe_for`
adds what comes from the data set and the machine: translation DiffAugment stays on for the 4,500-digit
mnist-5k and is off for the 60,000 Fashion images, where it cost label accuracy and GAN-train; conv recipes
compute in bfloat16 where the CPU has it (:func:`fast_compute_dtype`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cgan_contract as contract
from trainer import variants

ARCHS = ("dense", "conv")


class ConfigError(Exception):
    """A flag combination that cannot train; the message is one line for the user."""


# --- the recipe -------------------------------------------------------------------------------------------

POSITIVE = "positive"
NON_NEGATIVE = ">= 0"
FRACTION = "in [0, 1)"
TARGET = "in (0, 1]"
_RULES = {
    POSITIVE: lambda v: v > 0,
    NON_NEGATIVE: lambda v: v >= 0,
    FRACTION: lambda v: 0 <= v < 1,
    TARGET: lambda v: 0 < v <= 1,
}


def knob(default: Any, rule: str | tuple[str, ...] | None = None) -> Any:
    """A recipe field and the values it takes: a rule of :data:`_RULES`, or a tuple of choices."""
    return field(default=default, metadata={"rule": rule} if rule else {})


@dataclass(frozen=True)
class Optimiser:
    """Adam for each network (TTUR: D's rate apart), the EMA generator, and the step's arithmetic."""

    g_lr: float = knob(2e-4, POSITIVE)
    d_lr: float = knob(2e-4, POSITIVE)
    beta_1: float = knob(0.5, FRACTION)
    beta_2: float = knob(0.999, FRACTION)
    ema_decay: float = knob(0.0, FRACTION)  # > 0: an EMA copy of G is what is sampled and exported
    # conv arch: the dtype of the convolutions' and matmuls' arithmetic while training; weights, BatchNorm,
    # losses and the exported (EMA) generator stay float32. "bfloat16" runs on AMX/AVX512-BF16.
    compute_dtype: str = knob("float32", ("float32", "bfloat16"))


@dataclass(frozen=True)
class Objective:
    """The adversarial loss, the class terms' weights and the LeCam regulariser."""

    loss: str = "bce"  # the adversarial loss; each variant says which it trains with
    real_target: float = knob(1.0, TARGET)  # < 1 is one-sided label smoothing (BCE only)
    class_weight: float = knob(1.0, NON_NEGATIVE)  # class loss weight in D's objective (a class head)
    g_class_weight: float = knob(
        1.0, NON_NEGATIVE
    )  # class loss weight in G's objective (< 1 keeps diversity)
    lecam_weight: float = knob(
        0.0, NON_NEGATIVE
    )  # LeCam regulariser on D's logits (Tseng et al. 2021); 0 = off
    lecam_decay: float = knob(0.99, FRACTION)  # LeCam: EMA decay of the real and fake logit anchors
    # MSGAN's mode-seeking term in G's objective (Mao et al. 2019): G's step draws its batch as pairs of one
    # label and two noises and pays weight / (image distance / noise distance); 0 = off
    mode_seeking: float = knob(0.0, NON_NEGATIVE)


@dataclass(frozen=True)
class Augmentation:
    """DiffAugment on everything D sees, and affine jitter of the real training images."""

    augment_shift: int = knob(0, NON_NEGATIVE)  # DiffAugment translation, pixels
    augment_cutout: int = knob(0, NON_NEGATIVE)  # DiffAugment cutout, pixels
    jitter_degrees: float = knob(0.0, NON_NEGATIVE)  # real training images only: random rotation up to this
    jitter_zoom: float = knob(0.0, FRACTION)  # real training images only: random scale in 1 ± this


@dataclass(frozen=True)
class Conditioning:
    """How the label enters beyond a variant's own inputs."""

    cond_bn: bool = False  # conv arch: class-conditional BatchNorm in the generator
    aux_classifier: bool = False  # CGAN conv: a class head on the projection D, trained on real images


@dataclass(frozen=True)
class Nets:
    """Widths and normalisation of the networks."""

    spectral_norm: bool = False  # spectral norm on D's layers
    g_width: int = knob(64, POSITIVE)  # conv arch: channels of G's middle layer (7x7 has 2x, 28x28 1/2x)
    d_width: int = knob(64, POSITIVE)  # conv arch: channels of the discriminator's last conv


@dataclass(frozen=True)
class NoExtras:
    """No variant knobs given: a variant takes its own (its ``Extras``) at their defaults."""


SECTIONS = ("optimiser", "objective", "augmentation", "conditioning", "nets", "extras")


@dataclass(frozen=True, init=False)
class Recipe:
    """Training knobs in sections. The defaults are the article's: BCE, Adam(2e-4, 0.5), nothing else.

    Knobs can be given flat, ``Recipe(loss="hinge", ema_decay=0.999)`` or
    ``dataclasses.replace(recipe, margin=0.5)``, and read flat, ``recipe.margin``: each name is in one
    section. ``extras`` holds the variant's own knobs (its ``Extras`` dataclass)."""

    optimiser: Optimiser = Optimiser()
    objective: Objective = Objective()
    augmentation: Augmentation = Augmentation()
    conditioning: Conditioning = Conditioning()
    nets: Nets = Nets()
    extras: Any = NoExtras()

    def __init__(self, **given: Any):
        """Sections by name (``objective=Objective(...)``), then knobs by name on top of them."""
        sections = {f.name: given.pop(f.name, f.default) for f in dataclasses.fields(self)}
        for name, value in given.items():
            owner = next((s for s, part in sections.items() if name in _names(part)), None)
            if owner is None:
                raise TypeError(f"the recipe has no knob {name!r}")
            sections[owner] = replace(sections[owner], **{name: value})
        shared = {name for section, part in sections.items() if section != "extras" for name in _names(part)}
        if clash := shared & _names(sections["extras"]):
            raise TypeError(f"the variant's own knobs {sorted(clash)} repeat shared knobs' names")
        for name, part in sections.items():
            object.__setattr__(self, name, part)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: a knob read flat, from whichever section holds it.
        if name.startswith("_") or name in SECTIONS:
            raise AttributeError(name)
        for section in SECTIONS:
            part = object.__getattribute__(self, section)
            if name in _names(part):
                return getattr(part, name)
        raise AttributeError(f"the recipe has no knob {name!r}")

    def knobs(self) -> dict[str, dataclasses.Field]:
        """Every knob's field, flat, in section order."""
        return {f.name: f for section in SECTIONS for f in dataclasses.fields(getattr(self, section))}

    def flat(self) -> dict[str, Any]:
        """``{knob: value}``: what ``run.json`` and the model card record."""
        return {name: getattr(self, name) for name in self.knobs()}

    def defaults(self) -> dict[str, Any]:
        """``{knob: default}`` for the knobs this recipe has (its variant's ``extras`` included)."""
        return Recipe(extras=type(self.extras)()).flat()

    @classmethod
    def from_flat(cls, values: dict[str, Any], extras: type = NoExtras) -> Recipe:
        """The recipe a flat record (``run.json``) describes, with ``extras`` the variant's knobs. Knobs it
        does not have are left out: older versions recorded every variant's knobs for every run."""
        known = cls(extras=extras()).knobs()
        return cls(extras=extras(), **{k: v for k, v in values.items() if k in known})


def _names(part: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(part)}


ARTICLE = Recipe()

MODERN = Recipe(
    objective=Objective(loss="hinge"),
    optimiser=Optimiser(g_lr=2e-4, d_lr=4e-4, beta_1=0.0, beta_2=0.9, ema_decay=0.999),
    augmentation=Augmentation(augment_shift=2),
    nets=Nets(spectral_norm=True),
)


_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def override_recipe(recipe: Recipe, pairs: list[str]) -> Recipe:
    """``recipe`` with ``FIELD=VALUE`` pairs (``cgan-train train --recipe``) on top, typed like the field."""
    fields = recipe.knobs()
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


def recipe_problem(recipe: Recipe, variant: str, arch: str) -> str | None:
    """What makes ``recipe`` untrainable for ``variant`` and ``arch`` (a ``--recipe`` value out of range),
    or None: the variant's ``recipe_problem``, which starts from :func:`knob_problem`."""
    cls = variants.variant_class(variant)
    return cls.recipe_problem(cls.complete(recipe), arch)


def knob_problem(recipe: Recipe, arch: str) -> str | None:
    """A knob outside its rule (:func:`knob`), or an arithmetic the arch cannot train with, or None."""
    for name, f in recipe.knobs().items():
        rule, value = f.metadata.get("rule"), getattr(recipe, name)
        if isinstance(rule, tuple) and value not in rule:
            return f"{name} must be one of {', '.join(rule)}, got {value!r}"
        if isinstance(rule, str) and not _RULES[rule](value):
            return f"{name} must be {rule}, got {value}"
    if recipe.compute_dtype != "float32" and arch != "conv":
        return f"compute_dtype={recipe.compute_dtype} is for the conv arch; the dense one trains in float32"
    if recipe.compute_dtype != "float32" and not recipe.ema_decay:
        return f"compute_dtype={recipe.compute_dtype} needs ema_decay > 0: the EMA generator is exported"
    return None


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


def recipe_for(variant: str, arch: str, augment_shift: int = 2) -> Recipe:
    """The variant's recipe for ``arch`` (its ``default_recipe``), and for conv the data set's DiffAugment
    translation ``augment_shift`` and the machine's :func:`fast_compute_dtype` (``run.json`` and the card
    record which)."""
    recipe = variants.variant_class(variant).default_recipe(arch)
    if arch == "conv":
        recipe = replace(recipe, augment_shift=augment_shift, compute_dtype=fast_compute_dtype())
    return recipe


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
        try:
            problem = recipe_problem(self.recipe, self.variant, self.arch)
        except ValueError as exc:  # an unknown variant
            raise ConfigError(str(exc)) from None
        if problem:
            raise ConfigError(f"--recipe {problem}")

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["recipe"] = self.recipe.flat()
        data["out"], data["work_dir"] = str(self.out), str(self.work_dir)
        data["data_dir"] = str(self.data_dir) if self.data_dir else None
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}  # runs saved by older versions carry more
        try:
            extras = variants.variant_class(data["variant"]).Extras
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        data["recipe"] = Recipe.from_flat(data["recipe"], extras)
        data["out"], data["work_dir"] = Path(data["out"]), Path(data["work_dir"])
        data["data_dir"] = Path(data["data_dir"]) if data["data_dir"] else None
        return cls(**data)
