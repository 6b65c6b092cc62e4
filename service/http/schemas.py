"""The HTTP request and response bodies. Each request body builds its domain request with ``to_request()``
(:mod:`service.requests`), the one place its fields are handed on. Limits that come from settings (MAX_N,
...) are enforced by the data plane and written into the OpenAPI schema by
:func:`service.http.openapi.document_service`; the formats are :mod:`service.formats`' names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError, core_schema

import cgan_contract as contract
from cgan_contract import ModelCard
from service import formats, style_codes
from service.errors import RequestError
from service.requests import ArchiveRequest, ImageRequest

LABEL_MAX_CHARS = 64
MAX_PAD = 16
MAX_LABELS = 4096


def _index_or_name(kind: str, description: str, examples: list[int | str]) -> Any:
    """An ``int | str`` field naming a ``kind`` (class, code) by index or by name. One validator instead of a
    union, so an error reads "label: ..." rather than once per member."""

    def check(value: object) -> int | str:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"must be a {kind} index (integer) or a {kind} name (string)")
        if isinstance(value, str) and not 1 <= len(value) <= LABEL_MAX_CHARS:
            raise ValueError(f"{kind} names are 1 to {LABEL_MAX_CHARS} characters")
        return value

    string = {"type": "string", "minLength": 1, "maxLength": LABEL_MAX_CHARS}
    schema = {"anyOf": [{"type": "integer"}, string], "description": description, "examples": examples}
    return Annotated[int | str, PlainValidator(check), WithJsonSchema(schema)]


Label = _index_or_name("class", "Class index (0-based) or class name from the model card.", [9, "7"])
ModelName = Annotated[str, Field(pattern=contract.MODEL_NAME_PATTERN, examples=["mnist-cgan"])]


def version_digits(value: object) -> object:
    """A version spelled in a path or query string: decimal ASCII digits only. pydantic's lax int would read
    ``1.0``, ``+1``, ``1_0`` and `` 1`` as a version, and ``str.isdigit`` takes ``²``."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit() and len(value) <= 18):
        raise ValueError(f"{value[:32]!r} is not a model version (a positive integer: decimal digits)")
    return value


Version = Annotated[
    int,
    BeforeValidator(version_digits),
    Field(
        ge=1,
        description="Model version to use (one of the loaded ones, see /v1/models); the newest when absent.",
        examples=[3],
    ),
]


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("style codes are numbers")
    return float(value)


def _codes(value: object) -> list[float] | list[list[float]]:
    # One validator instead of a union, so an error reads "codes: ..." once; ranges are the data plane's.
    if not isinstance(value, list):
        raise ValueError("must be a list of k numbers, or one list of k numbers per image")
    if value and all(isinstance(row, list) for row in value):
        return [[_number(v) for v in row] for row in value]
    return [_number(v) for v in value]


def _shared_codes(value: object) -> list[float]:
    if not isinstance(value, list):
        raise ValueError("must be a list of k numbers (the codes of every image)")
    return [_number(v) for v in value]


_CODES_DOC = (
    "Style codes, for a model with codes (its card's `codes`, in order, each within its range): k numbers "
)
Codes = Annotated[
    list[float] | list[list[float]],
    PlainValidator(_codes),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "array", "items": {"type": "number"}},
                {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
            ],
            "description": _CODES_DOC + "for all images, or one list of k per image (n lists; a traversal: "
            "one per row). Each image's codes follow its seed when absent.",
            "examples": [[0.5, -1.0]],
        }
    ),
]
SharedCodes = Annotated[
    list[float],
    PlainValidator(_shared_codes),
    WithJsonSchema(
        {
            "type": "array",
            "items": {"type": "number"},
            "description": _CODES_DOC + "for all images. Each image's codes follow its seed when absent, so "
            "a dataset covers the codes' ranges.",
            "examples": [[0.5, -1.0]],
        }
    ),
]


CodeRef = _index_or_name(
    "code", "The code to sweep: its name from the model card's `codes`, or its index.", ["slant", 0]
)


class Traverse(BaseModel):
    """A traversal grid: one style code swept over its range, one row per seed."""

    model_config = ConfigDict(extra="forbid", strict=True)

    code: CodeRef
    steps: int = Field(
        style_codes.DEFAULT_STEPS,
        ge=2,
        description="Columns, low to high (evenly spaced); n x steps is at most MAX_N.",
    )

    def to_traversal(self) -> style_codes.Traversal:
        return style_codes.Traversal(self.code, self.steps)


@dataclass(frozen=True)
class OneOf:
    """A string field whose values are the keys of ``choices`` (a format registry) when a request is checked
    and when the schema is written, so a format registered in :mod:`service.formats` is accepted and listed
    without editing the schema; a refusal reads like a ``Literal``'s ("Input should be 'png' or 'npy'")."""

    choices: Mapping[str, object]

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(self._check)

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return {"enum": list(self.choices), "type": "string"}

    def _check(self, value: object) -> str:
        if isinstance(value, str) and value in self.choices:
            return value
        names = [repr(name) for name in self.choices]
        expected = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})


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
        description="Keep only images the model's judge (its card's `judge`) assigns to the label (its top "
        "class) with at least this probability, drawing the next seeds until the count is met (at most 20 "
        "candidates per image, else 422). 0 drops only images the judge calls another class: label accuracy "
        "up, training value kept; high values keep the easiest images and lower it. The acceptance rate "
        "comes back in X-Acceptance-Rate.",
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
                {"label": 7, "n": 16, "seed": 1, "codes": [-1.5, 0.0], "model": "mnist-infogan"},
                {
                    "label": 7,
                    "n": 4,
                    "seed": 1,
                    "traverse": {"code": "slant", "steps": 8},
                    "model": "mnist-infogan",
                },
            ]
        },
    )

    label: Label
    n: int = Field(16, ge=1, description="Number of images, 1..MAX_N.")
    seed: Seed | None = None
    model: ModelName | None = Field(None, description="Model name; the default model when absent.")
    version: Version | None = None
    format: Annotated[str, OneOf(formats.IMAGE_FORMATS)] = Field(
        "png", description="png: one grid image; npy: uint8 [n, H, W]; json: pixels as nested lists."
    )
    nrow: int | None = Field(None, ge=1, description="PNG grid: images per row; default ceil(sqrt(n)).")
    pad: int = Field(2, ge=0, le=MAX_PAD, description="PNG grid: background pixels around each cell.")
    codes: Codes | None = None
    traverse: Traverse | None = Field(
        None,
        description="Instead of n images: n rows (seed + row) of `steps` columns sweeping one code over its "
        "range, the other codes at the row's values (or `codes`); image r x steps + c in npy and json.",
    )
    truncation: Truncation | None = None
    min_confidence: MinConfidence | None = None

    def to_request(self) -> ImageRequest:
        traverse = None if self.traverse is None else self.traverse.to_traversal()
        return ImageRequest(**{**dict(self), "traverse": traverse})


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
    codes: str | None = Field(
        None,
        max_length=1024,
        description="Style codes for all images, comma-separated (`0.5,-1`); see POST /generate.",
    )
    traverse: str | None = Field(
        None, max_length=LABEL_MAX_CHARS, description="Code (name or index) to sweep: a traversal grid."
    )
    steps: int | None = Field(None, ge=2, description="Traversal columns (default 8); n x steps <= MAX_N.")
    truncation: Truncation | None = None
    min_confidence: MinConfidence | None = None

    def to_request(self) -> ImageRequest:
        """The PNG request of ``POST /generate`` with these fields; codes are parsed from ``0.5,-1``."""
        codes = None if self.codes is None else style_codes.parse_text(self.codes)
        if self.steps is not None and self.traverse is None:
            raise RequestError("steps: only with traverse (the code to sweep)", "steps")
        traverse = None
        if self.traverse is not None:
            traverse = style_codes.Traversal(self.traverse, self.steps or style_codes.DEFAULT_STEPS)
        fields = {**dict(self), "codes": codes, "traverse": traverse, "format": "png"}
        del fields["steps"]
        return ImageRequest(**fields)


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
    codes: list[list[float]] | None = Field(
        None, description="Each image's style codes (models with codes only; absent otherwise)."
    )


class DatasetRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"per_label": 1000, "seed": 0},
                {"per_label": 10, "labels": [0, "1", 7], "format": "zip", "seed": 123},
                {"per_label": 2000, "labels": [7], "codes": [-1.5, -0.8], "model": "mnist-infogan"},
                {"per_label": 1000, "seed": 0, "order": "by_class"},
                {"per_label": 1000, "seed": 0, "start": 2500, "stop": 5000},
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
    format: Annotated[str, OneOf(formats.ARCHIVE_FORMATS)] = Field(
        "npz",
        description="npz: x uint8 [N, H, W], y int64 [N], seeds int64 [N], order; zip: PNG per image, folder "
        "per class name, manifest; tar: a WebDataset shard, <key>.png, <key>.cls and <key>.json per image "
        "(key = position in the order).",
    )
    codes: SharedCodes | None = None
    truncation: Truncation | None = None
    min_confidence: MinConfidence | None = None
    order: Literal["shuffled", "by_class"] = Field(
        contract.DEFAULT_ORDER,
        description="The order the images come in; the same images (labels and seeds) either way. "
        "shuffled: a stratified shuffle keyed by the seed: every run of len(labels) images holds each label "
        "once, so any batch or window is class-balanced, ready to train on as it streams. by_class: each "
        "label's images together, labels in the order given (the only order before this field).",
    )
    start: int | None = Field(
        None,
        ge=0,
        description="Only the images at positions [start, stop) of that order (default: from 0): a "
        "contiguous, class-balanced run of the same set, for parallel downloads and data-loader workers.",
    )
    stop: int | None = Field(
        None, ge=1, description="End of the run (exclusive; default: the whole set, N = labels x per_label)."
    )

    def to_request(self) -> ArchiveRequest:
        return ArchiveRequest(**dict(self))


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
