"""The trainer <-> service contract: one model directory format, written down once.

Both ``trainer`` and ``service`` import this module, so it depends on numpy and pydantic only.

A model lives in ``MODELS_DIR/<name>/<version>/`` (``version`` a positive integer, newest wins) and holds:

* ``model.onnx``: the generator. Inputs ``z`` float32 ``[N, latent_dim]`` and ``label`` int64 ``[N]``
  (0 <= label < num_classes); output ``image`` uint8 ``[N, H, W, C]`` where 0 is background and 255 is
  ink. The tanh -> uint8 scaling (``round((t + 1) * 127.5)``, clipped) is part of the graph, so a server
  does no per-pixel work.
* ``model.json``: a :class:`ModelCard`. A server can serve the model from the card alone.

Version directories appear atomically: writers build them under a name starting with ``.`` in the same
parent and rename. Readers ignore every entry whose name is not a decimal integer.

Noise is reproducible: :func:`noise_for_seeds` gives image ``i`` of a request with seed ``s`` the noise of
seed ``s + i``, so ``{seed: s, n: 16}`` image ``k`` equals ``{seed: s + k, n: 1}``.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

CONTRACT_VERSION = 1

MODEL_FILE = "model.onnx"
CARD_FILE = "model.json"

INPUT_NOISE = "z"
INPUT_LABEL = "label"
OUTPUT_IMAGE = "image"
NOISE_DTYPE = "float32"
LABEL_DTYPE = "int64"
IMAGE_DTYPE = "uint8"

#: Pixel value of the background and of full ink in the ``image`` output.
BACKGROUND = 0
INK = 255

#: Seeds are JSON- and JavaScript-safe integers.
MAX_SEED = 2**53 - 1

#: Model names are single path components: no separators, no dot-files, nothing that escapes MODELS_DIR.
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_MODEL_NAME_RE = re.compile(MODEL_NAME_PATTERN)


class TensorSpec(BaseModel):
    """One ONNX graph input or output. ``None`` in ``shape`` is the batch dimension."""

    model_config = ConfigDict(extra="forbid")

    name: str
    dtype: Literal["float32", "int64", "uint8"]
    shape: list[int | None]


class Training(BaseModel):
    """Facts about the run that produced the generator."""

    steps: int
    batch_size: int
    seed: int
    wall_seconds: float
    images_per_second: float
    steps_per_second: float
    recipe: dict[str, object] = Field(default_factory=dict)


class Quality(BaseModel):
    """Filled in by ``python -m trainer evaluate``; ``None`` on the card until then."""

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
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: datetime
    trainer_version: str
    training: Training | None = None
    quality: Quality | None = None

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
        # Digits are class names too; accept "7" as 7 even where names differ from indices.
        if label.strip().lstrip("-").isdigit():
            return self.label_index(int(label))
        raise ValueError(f"unknown label {label!r}; classes are {self.class_names}")


def signature(
    latent_dim: int, image_shape: tuple[int, int, int]
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The ONNX inputs and outputs a generator with these sizes must have."""
    inputs = [
        TensorSpec(name=INPUT_NOISE, dtype=NOISE_DTYPE, shape=[None, latent_dim]),
        TensorSpec(name=INPUT_LABEL, dtype=LABEL_DTYPE, shape=[None]),
    ]
    outputs = [TensorSpec(name=OUTPUT_IMAGE, dtype=IMAGE_DTYPE, shape=[None, *image_shape])]
    return inputs, outputs


def valid_model_name(name: str) -> bool:
    return bool(_MODEL_NAME_RE.fullmatch(name))


def version_dirs(model_root: Path) -> list[tuple[int, Path]]:
    """Complete version directories under ``MODELS_DIR/<name>``, oldest first; temp dirs are skipped."""
    if not model_root.is_dir():
        return []
    found = []
    for entry in model_root.iterdir():
        if entry.name.isdigit() and entry.is_dir() and int(entry.name) >= 1:
            found.append((int(entry.name), entry))
    return sorted(found)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_uint8(tanh_images: np.ndarray) -> np.ndarray:
    """The contract's pixel rule on the host: tanh range [-1, 1] -> uint8, 0 background, 255 ink."""
    return np.clip(np.round((tanh_images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def from_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [-1, 1], the generator's range."""
    return images.astype(np.float32) / 127.5 - 1.0


# splitmix64: a counter-based hash makes the noise of seed s independent of the batch around it and
# vectorises over a whole request (a numpy Generator per image costs ~10 us each). Integer arrays wrap on
# overflow silently, which is the arithmetic splitmix64 wants.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_STREAMS: dict[int, np.ndarray] = {}


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place."""
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return z


def noise_for_seeds(seeds: np.ndarray | list[int], latent_dim: int) -> np.ndarray:
    """Standard-normal noise ``[len(seeds), latent_dim]`` float32; row i depends on ``seeds[i]`` only.

    Row i is the splitmix64 stream keyed by splitmix64(seed_i); each 64-bit draw gives two 24-bit
    uniforms (exact in float32) for one Box-Muller normal, so |z| < 5.9 and the maths runs in float32.
    """
    seeds = np.asarray(seeds, dtype=np.uint64).reshape(-1, 1)
    steps = _STREAMS.get(latent_dim)
    if steps is None:
        steps = _STREAMS[latent_dim] = np.arange(1, latent_dim + 1, dtype=np.uint64) * _GOLDEN
    bits = _mix(_mix(seeds * _GOLDEN + _GOLDEN) + steps)
    radius = ((bits >> np.uint64(40)).astype(np.float32) + np.float32(0.5)) * np.float32(2.0**-24)
    angle = (bits & np.uint64(0xFFFFFF)).astype(np.float32) * np.float32(2.0 * np.pi * 2.0**-24)
    np.log(radius, out=radius)
    radius *= np.float32(-2.0)
    np.sqrt(radius, out=radius)
    np.cos(angle, out=angle)
    radius *= angle
    return radius


def request_seeds(seed: int, n: int) -> np.ndarray:
    """The per-image seeds of a request: image i uses ``seed + i``."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in 0..{MAX_SEED}")
    return np.arange(seed, seed + n, dtype=np.uint64)


def noise(seed: int, n: int, latent_dim: int) -> np.ndarray:
    """Noise for ``n`` images of a request with ``seed``: image i uses seed + i."""
    return noise_for_seeds(request_seeds(seed, n), latent_dim)


def read_card(version_dir: Path) -> ModelCard:
    return ModelCard.model_validate_json((version_dir / CARD_FILE).read_text())


def card_json(card: ModelCard) -> str:
    return card.model_dump_json(indent=2)
