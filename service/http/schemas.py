"""The HTTP request and response bodies. Limits that come from settings (MAX_N, ...) are enforced by the data
plane and written into the OpenAPI schema by :func:`service.http.openapi.document_service`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema

import cgan_contract as contract
from cgan_contract import ModelCard

LABEL_MAX_CHARS = 64
MAX_PAD = 16
MAX_LABELS = 4096


def _label(value: object) -> int | str:
    # One validator instead of an int | str union, so an error reads "label: ..." rather than once per member.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be a class index (integer) or a class name (string)")
    if isinstance(value, str) and not 1 <= len(value) <= LABEL_MAX_CHARS:
        raise ValueError(f"class names are 1 to {LABEL_MAX_CHARS} characters")
    return value


Label = Annotated[
    int | str,
    PlainValidator(_label),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string", "minLength": 1, "maxLength": LABEL_MAX_CHARS}],
            "description": "Class index (0-based) or class name from the model card.",
            "examples": [9, "7"],
        }
    ),
]
ModelName = Annotated[str, Field(pattern=contract.MODEL_NAME_PATTERN, examples=["mnist-cgan"])]
Version = Annotated[
    int,
    Field(
        ge=1,
        description="Model version to use (one of the loaded ones, see /v1/models); the newest when absent.",
        examples=[3],
    ),
]
Truncation = Annotated[
    float,
    Field(
        ge=contract.MIN_TRUNCATION,
        le=contract.MAX_TRUNCATION,
        description="Truncation trick: noise entries with |z| above this are redrawn from further along the "
        "image's own seed (still reproducible by seed). Lower: more typical, less varied images.",
        examples=[1.0],
    ),
]
MinConfidence = Annotated[
    float,
    Field(
        ge=0.0,
        le=1.0,
        description="Keep only images the model's judge (its card's `judge`) assigns to the label with at "
        "least this probability, drawing the next seeds until the count is met (at most 20 candidates per "
        "image, else 422). The acceptance rate comes back in X-Acceptance-Rate.",
        examples=[0.99],
    ),
]
Seed = Annotated[
    int,
    Field(
        ge=0, le=contract.MAX_SEED, description="Image i uses seed + i. Random (and echoed back) when absent."
    ),
]


class GenerateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"label": 9, "n": 16},
                {"label": "7", "n": 4, "seed": 42, "format": "npy"},
                {"label": 3, "n": 2, "seed": 7, "format": "json", "model": "mnist-cgan"},
            ]
        },
    )

    label: Label
    n: int = Field(16, ge=1, description="Number of images, 1..MAX_N.")
    seed: Seed | None = None
    model: ModelName | None = Field(None, description="Model name; the default model when absent.")
    version: Version | None = None
    format: Literal["png", "npy", "json"] = Field(
        "png", description="png: one grid image; npy: uint8 [n, H, W]; json: pixels as nested lists."
    )
    nrow: int | None = Field(None, ge=1, description="PNG grid: images per row; default ceil(sqrt(n)).")
    pad: int = Field(2, ge=0, le=MAX_PAD, description="PNG grid: background pixels around each cell.")
    truncation: Truncation | None = None
    min_confidence: MinConfidence | None = None


class GenerateQuery(BaseModel):
    """``GET /generate``: the PNG grid of ``POST /generate`` addressed by URL, for ``<img src>``."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(
        min_length=1, max_length=LABEL_MAX_CHARS, description="Class index or class name.", examples=["9"]
    )
    n: int = Field(16, ge=1, description="Number of images, 1..MAX_N.")
    seed: Seed | None = None
    model: ModelName | None = Field(None, description="Model name; the default model when absent.")
    version: Version | None = None
    nrow: int | None = Field(None, ge=1, description="Images per row; default ceil(sqrt(n)).")
    pad: int = Field(2, ge=0, le=MAX_PAD, description="Background pixels around each cell.")
    truncation: Truncation | None = None
    min_confidence: MinConfidence | None = None


class GeneratedImages(BaseModel):
    """``format: json``: the same pixels as ``npy``, as nested lists."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "mnist-cgan",
                    "version": 3,
                    "labels": [7],
                    "class_name": "7",
                    "seeds": [42],
                    "shape": [1, 2, 2],
                    "images": [[[0, 255], [12, 0]]],
                }
            ]
        }
    )

    model: str
    version: int
    labels: list[int]
    class_name: str
    seeds: list[int] = Field(
        description="Each image's seed: seed + i, or with min_confidence the seeds kept."
    )
    shape: list[int] = Field(description="[n, H, W] for single-channel models, else [n, H, W, C].")
    images: list = Field(description="uint8 pixels shaped like `shape`; 0 background, 255 ink.")


class DatasetRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"per_label": 1000, "seed": 0},
                {"per_label": 10, "labels": [0, "1", 7], "format": "zip", "seed": 123},
            ]
        },
    )

    per_label: int = Field(ge=1, description="Images per label, 1..MAX_PER_LABEL.")
    labels: list[Label] | None = Field(
        None,
        min_length=1,
        max_length=MAX_LABELS,
        description="Labels to include, in order; every class when absent.",
    )
    seed: Seed | None = None
    model: ModelName | None = Field(None, description="Model name; the default model when absent.")
    version: Version | None = None
    format: Literal["npz", "zip", "tar"] = Field(
        "npz",
        description="npz: x uint8 [N, H, W], y int64 [N]; zip: PNG per image, folder per class, manifest; "
        "tar: a WebDataset shard, <key>.png, <key>.cls and <key>.json per image (key = image index).",
    )
    truncation: Truncation | None = None
    min_confidence: MinConfidence | None = None


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"ready": True, "reason": None, "models": {"mnist-cgan": 3}, "refused": {}},
                {
                    "ready": False,
                    "reason": "no valid model version under MODELS_DIR '/models'",
                    "models": {},
                    "refused": {"/models/mnist-cgan/4": "incomplete: model.json is missing"},
                },
            ]
        }
    )

    ready: bool
    reason: str | None = Field(None, examples=["no valid model version under MODELS_DIR '/models'"])
    models: dict[str, int] = Field(description="Served model name -> version.", examples=[{"mnist-cgan": 3}])
    refused: dict[str, str] = Field(
        default_factory=dict, description="Version directories refused at load, with the reason."
    )


_CARD_EXAMPLE = {
    "contract_version": 1,
    "name": "mnist-cgan",
    "version": 3,
    "variant": "cgan",
    "arch": "conv",
    "dataset": "mnist",
    "class_names": [str(i) for i in range(10)],
    "latent_dim": 100,
    "image_shape": [28, 28, 1],
    "inputs": [
        {"name": "z", "dtype": "float32", "shape": [None, 100]},
        {"name": "label", "dtype": "int64", "shape": [None]},
    ],
    "outputs": [{"name": "image", "dtype": "uint8", "shape": [None, 28, 28, 1]}],
    "opset": 17,
    "sha256": "9bc1" + "0" * 60,
    "created_at": "2025-01-01T12:00:00Z",
    "trainer_version": "0.1.0",
    "training": None,
    "quality": None,
}
_SERVED_EXAMPLE = {
    "name": "mnist-cgan",
    "version": 3,
    "versions": [3, 2],
    "default": True,
    "source": "models_dir",
    "loaded_at": "2025-01-01T12:05:00Z",
    "card": _CARD_EXAMPLE,
}


class ServedModel(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_SERVED_EXAMPLE]})

    name: str
    version: int = Field(description="The version described here (the newest loaded unless one was asked).")
    versions: list[int] = Field(description="Every loaded version, newest first; requests may pin any.")
    default: bool
    #: "models_dir", or "bundled": the default model shipped with the service (superseded by MODELS_DIR).
    source: Literal["models_dir", "bundled"]
    loaded_at: datetime
    card: ModelCard


class ModelList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"default": "mnist-cgan", "models": [_SERVED_EXAMPLE]}]}
    )

    default: str | None
    models: list[ServedModel]
