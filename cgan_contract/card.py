"""``model.json``, the model card: everything a server needs to load, check and describe a generator.

The trainer writes it at export and ``cgan-train evaluate`` fills its ``quality`` section; the service
refuses a version whose card does not validate. Every field either side writes is declared here.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cgan_contract.layout import CARD_FILE, MODEL_NAME_PATTERN
from cgan_contract.tensors import INPUT_CODES, TensorSpec

CONTRACT_VERSION = 1


class Training(BaseModel):
    """Facts about the run that produced the generator."""

    steps: int
    batch_size: int
    seed: int
    wall_seconds: float
    images_per_second: float
    steps_per_second: float
    recipe: dict[str, object] = Field(default_factory=dict)


class PRDC(BaseModel):
    """k-NN precision, recall, density and coverage of generated vs real judge features (see
    ``trainer.evaluation.scores.prdc``): precision and density measure fidelity, recall and coverage
    diversity."""

    precision: float
    recall: float
    density: float
    coverage: float


class AugmentationArm(BaseModel):
    """One training set of the augmentation-value measurement: the real training split plus
    ``synthetic_samples`` generated images (0 for real alone), the probe's accuracy on the real test split."""

    #: Generated images per real image (0, 1, 2); per class, so the class mix stays the real one.
    synthetic_multiple: float
    real_samples: int
    synthetic_samples: int
    #: Mean of ``runs``, one probe training per seed.
    accuracy: float
    runs: list[float]
    #: Optimizer steps of each probe training: the probe trains a fixed number of epochs, so a larger set
    #: also means more steps.
    steps: int


class Interval(BaseModel):
    """A two-sided interval of a figure (95% unless its owner says otherwise)."""

    low: float
    high: float


class Intervals(BaseModel):
    """Percentile bootstrap intervals of the distance figures (``trainer.evaluation.intervals``): the
    judge-feature rows of each set resampled with replacement within each class, ``resamples`` times
    (seeded), every figure recomputed on each resample; a ratio's interval comes from the same resamples
    (paired). ``None`` where a figure was not measured, or for a ratio whose floor is not above 0 in every
    resample."""

    level: float
    resamples: int
    seed: int
    fid: Interval | None = None
    fid_floor: Interval | None = None
    fid_ratio: Interval | None = None
    fid_matched: Interval | None = None
    fid_floor_matched: Interval | None = None
    fid_ratio_matched: Interval | None = None
    kid: Interval | None = None
    kid_floor: Interval | None = None
    kid_ratio: Interval | None = None


class WorthPoint(BaseModel):
    """One training set of the worth measurement: the probe's accuracy on the real test split, mean of
    ``runs`` (one training per seed)."""

    samples: int
    accuracy: float
    runs: list[float]
    #: Optimizer steps of each probe training.
    steps: int


class RealCurvePoint(WorthPoint):
    """A point of the real learning curve: ``fraction`` of each class of the real training split."""

    fraction: float


class SyntheticWorth(WorthPoint):
    """A synthetic training set ``multiple`` times the real split's size (per class), and what it is worth:
    the real images that reach its accuracy on the learning curve (monotone, piecewise linear). Outside the
    curve ``outside`` says which side, and ``equivalent_real`` is the curve's end there: ``"above"`` means
    more than all the real images, ``"below"`` fewer than the smallest fraction."""

    multiple: float
    equivalent_real: float
    outside: Literal["above", "below"] | None = None


class Worth(BaseModel):
    """Worth in real images (``cgan-train evaluate --worth``): GAN-train at several synthetic sizes,
    read off a learning curve of the same probe trained on fractions of the real training split."""

    real_samples: int
    curve: list[RealCurvePoint]
    synthetic: list[SyntheticWorth]
    seconds: float | None = None


class Quality(BaseModel):
    """Filled in by ``cgan-train evaluate``; ``None`` on the card until then.

    The fields after ``evaluated_at`` came later than the first cards, so they are optional: older cards
    stay loadable. Unknown fields are kept as they are, for cards written by a newer evaluator.
    """

    model_config = ConfigDict(extra="allow")

    samples_per_class: int
    label_accuracy: float
    per_class_accuracy: list[float]
    judge_test_accuracy: float
    fid: float
    fid_floor: float
    fid_ratio: float
    gan_train_accuracy: float
    real_train_accuracy: float
    diversity_ratio: float
    mode_collapse: bool
    evaluated_at: datetime
    #: GAN-train and real-train accuracy of each probe seed; the accuracies above are their means.
    gan_train_runs: list[float] | None = None
    real_train_runs: list[float] | None = None
    #: First noise seed of the generated images (image i used seed + i).
    seed: int | None = None
    #: Size of the matched generated and real-train sets, and of the real test split.
    matched_samples: int | None = None
    test_samples: int | None = None
    #: Per class: generated / real-test spread in judge features; ``None`` where undefined.
    per_class_diversity: list[float | None] | None = None
    #: The diversity ratio measured on raw pixels instead of judge features.
    pixel_diversity_ratio: float | None = None
    #: ``mode_collapse`` means some class's diversity ratio fell below this.
    collapse_threshold: float | None = None
    feature_space: str | None = None
    judge_file: str | None = None
    evaluation_seconds: float | None = None
    #: Precision/recall/density/coverage of the matched generated set vs the matched real training set,
    #: overall and per class (``None`` for a class too small for ``prdc_k`` neighbours).
    prdc: PRDC | None = None
    per_class_prdc: list[PRDC | None] | None = None
    prdc_k: int | None = None
    #: Real training split alone, then with generated images added; ``None`` when skipped.
    augmentation: list[AugmentationArm] | None = None
    augmentation_seconds: float | None = None
    #: KID and FID at matched sizes: ``kid_samples`` images on each side of every comparison (the same
    #: per-class counts of generated, real training and real test images; the test images the same for
    #: score and floor). ``fid``/``fid_floor`` above keep their first meaning (the matched generated set vs
    #: the whole test split). ``kid_ratio`` is ``None`` when the KID floor is not above 0.
    kid_samples: int | None = None
    kid: float | None = None
    kid_floor: float | None = None
    kid_ratio: float | None = None
    fid_matched: float | None = None
    fid_floor_matched: float | None = None
    fid_ratio_matched: float | None = None
    #: Bootstrap intervals of the FID and KID figures; ``None`` when not measured.
    intervals: Intervals | None = None
    #: Worth in real images; ``None`` unless measured (``--worth``).
    worth: Worth | None = None


class Provenance(BaseModel):
    """How to make this generator again: the command and the locked package versions that made it.

    Written by ``scripts/bundle-default-model`` for the models shipped with the service.
    """

    #: The documented ``cgan-train train ...`` command line (output locations left out: they change nothing).
    command: str
    #: Distribution name -> version of what trained, exported and evaluated it (tensorflow, keras, ...).
    packages: dict[str, str]


class JudgeSection(BaseModel):
    """The judge beside the generator (``judge.onnx``): the classifier ``cgan-train evaluate`` scores the
    generator with, trained on the real training split. A server may use it to keep only the images it
    assigns to the requested class with enough confidence. Optional: cards without one stay loadable.
    """

    model_config = ConfigDict(extra="forbid")

    #: Hex SHA-256 of ``judge.onnx``.
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    #: :func:`~cgan_contract.tensors.judge_signature` of the card's image shape and class count.
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    #: What it was trained on, and its accuracy on that dataset's real test split.
    dataset: str
    test_accuracy: float | None = None


class GateFigures(BaseModel):
    """The figures the INT8 quality gate compares (accuracies as fractions)."""

    label_accuracy: float
    fid_ratio: float
    gan_train_accuracy: float


class QualityGate(BaseModel):
    """The INT8 quality gate a quantized version was held to against its FP32 source (``cgan-train export
    --int8``): the limits, both sides' figures, and whether it passed. A server serves an ``int8`` version by
    default only with a passed gate against a loaded FP32 version (``PRECISION=auto``)."""

    passed: bool
    #: The FP32 version the figures compare with (the card's ``quantized_from``).
    against_version: int = Field(ge=1)
    #: That version's ``sha256``: a version numbered alike in another model root is not the source. Came
    #: after the first gates, so optional.
    against_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    #: How much worse the INT8 version may be: label accuracy and GAN-train drops (fractions), and the FID
    #: ratio's growth as a fraction of the FP32 one.
    label_accuracy_drop: float
    fid_ratio_increase: float
    gan_train_drop: float
    fp32: GateFigures
    int8: GateFigures


class StyleCode(BaseModel):
    """One continuous style code of a generator with a ``codes`` input (InfoGAN), in input order."""

    model_config = ConfigDict(extra="forbid")

    #: What the code controls, when evaluation found one property it tracks strongly (``"slant"``),
    #: else a generic ``"c0"``, ``"c1"``, ...
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    low: float = -1.0
    high: float = 1.0
    #: Filled by ``cgan-train evaluate``: Spearman correlation of a sweep of this code (all else fixed)
    #: with each measured image property (``slant``, ``ink``, ``width``, ``centre_x``, ...).
    spearman: dict[str, float] | None = None
    #: Filled by ``cgan-train evaluate``: mean absolute error of Q's estimate of this code, in code units.
    recovery_error: float | None = None

    @model_validator(mode="after")
    def _range(self) -> StyleCode:
        if not self.low < self.high:
            raise ValueError(f"code {self.name!r}: low must be below high")
        return self

    @property
    def range(self) -> tuple[float, float]:
        return (self.low, self.high)


class ModelCard(BaseModel):
    """``model.json``: everything a server needs to load, check and describe a generator."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    contract_version: int = CONTRACT_VERSION
    name: str = Field(pattern=MODEL_NAME_PATTERN)
    version: int = Field(ge=1)
    variant: str
    arch: str
    dataset: str
    class_names: list[str] = Field(min_length=1)
    latent_dim: int = Field(ge=1)
    image_shape: tuple[int, int, int]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    opset: int
    #: Hex SHA-256 of ``model.onnx``.
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: datetime
    trainer_version: str
    training: Training | None = None
    quality: Quality | None = None
    #: Came after the first cards, so optional: older cards stay loadable.
    provenance: Provenance | None = None
    #: The generator's style codes, in the order of its ``codes`` input; empty for a model without one.
    codes: list[StyleCode] = Field(default_factory=list)
    #: The judge shipped beside the generator, if any (``judge.onnx``).
    judge: JudgeSection | None = None
    #: Arithmetic of the graph's body: ``int8`` for a QDQ-quantized twin of an ``fp32`` export (inputs,
    #: output and pixel rule unchanged). Came later, so optional: older cards are ``fp32``.
    precision: Literal["fp32", "int8"] = "fp32"
    #: For an ``int8`` version: the FP32 version it was quantized from (its twin, evaluated alongside).
    quantized_from: int | None = Field(default=None, ge=1)
    #: For an ``int8`` version: the quality gate it was held to against ``quantized_from``.
    gate: QualityGate | None = None

    @model_validator(mode="after")
    def _codes_match_inputs(self) -> ModelCard:
        declared = [spec for spec in self.inputs if spec.name == INPUT_CODES]
        if self.codes and [spec.shape for spec in declared] != [[None, len(self.codes)]]:
            k = len(self.codes)
            raise ValueError(f"{k} codes need one input {INPUT_CODES!r} of shape [N, {k}]")
        if declared and not self.codes:
            raise ValueError(f"input {INPUT_CODES!r} needs its codes listed in 'codes'")
        if len({code.name for code in self.codes}) != len(self.codes):
            raise ValueError("code names must be unique")
        return self

    @property
    def code_ranges(self) -> list[tuple[float, float]]:
        return [code.range for code in self.codes]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def label_index(self, label: int | str) -> int:
        """Resolve an integer label or a class name to an index; ``ValueError`` names what is valid."""
        if isinstance(label, bool):
            raise ValueError("label must be an integer or a class name")
        if isinstance(label, int):
            if 0 <= label < self.num_classes:
                return label
            raise ValueError(f"label {label} is outside 0..{self.num_classes - 1}")
        if label in self.class_names:
            return self.class_names.index(label)
        # Digits are class names too; accept "7" as 7 even where names differ from indices. ASCII digits
        # only: str.isdigit() also says yes to "١" (int() reads it as 1) and "²" (int() refuses it).
        text = label.strip()
        if text.isascii() and text.lstrip("-").isdigit():
            return self.label_index(int(text))
        raise ValueError(f"unknown label {label!r}; classes are {self.class_names}")


def read_card(version_dir: Path) -> ModelCard:
    return ModelCard.model_validate_json((version_dir / CARD_FILE).read_text())


def card_json(card: ModelCard) -> str:
    return card.model_dump_json(indent=2)
