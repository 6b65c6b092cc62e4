"""The generator's ONNX signature: tensor names, dtypes and shapes, the same for every variant."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

INPUT_NOISE = "z"
INPUT_LABEL = "label"
OUTPUT_IMAGE = "image"
NOISE_DTYPE = "float32"
LABEL_DTYPE = "int64"
IMAGE_DTYPE = "uint8"


class TensorSpec(BaseModel):
    """One ONNX graph input or output. ``None`` in ``shape`` is the batch dimension."""

    model_config = ConfigDict(extra="forbid")

    name: str
    dtype: Literal["float32", "int64", "uint8"]
    shape: list[int | None]


def signature(
    latent_dim: int, image_shape: tuple[int, int, int]
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The ONNX inputs and outputs a generator with these sizes must have (``0 <= label < num_classes``)."""
    inputs = [
        TensorSpec(name=INPUT_NOISE, dtype=NOISE_DTYPE, shape=[None, latent_dim]),
        TensorSpec(name=INPUT_LABEL, dtype=LABEL_DTYPE, shape=[None]),
    ]
    outputs = [TensorSpec(name=OUTPUT_IMAGE, dtype=IMAGE_DTYPE, shape=[None, *image_shape])]
    return inputs, outputs
