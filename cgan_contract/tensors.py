"""The generator's ONNX signature: tensor names, dtypes and shapes, the same for every variant.

A generator with style codes (InfoGAN) has a third input, ``codes`` float32 ``[N, k]``; one without keeps
the two inputs every earlier model has.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

INPUT_NOISE = "z"
INPUT_LABEL = "label"
INPUT_CODES = "codes"
OUTPUT_IMAGE = "image"
NOISE_DTYPE = "float32"
LABEL_DTYPE = "int64"
CODES_DTYPE = "float32"
IMAGE_DTYPE = "uint8"
#: The judge (``judge.onnx``, optional): the generator's images in, class probabilities out.
JUDGE_INPUT = "image"
JUDGE_OUTPUT = "probabilities"
PROBABILITY_DTYPE = "float32"


class TensorSpec(BaseModel):
    """One ONNX graph input or output. ``None`` in ``shape`` is the batch dimension."""

    model_config = ConfigDict(extra="forbid")

    name: str
    dtype: Literal["float32", "int64", "uint8"]
    shape: list[int | None]


def signature(
    latent_dim: int, image_shape: tuple[int, int, int], num_codes: int = 0
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The ONNX inputs and outputs a generator with these sizes must have (``0 <= label < num_classes``)."""
    inputs = [
        TensorSpec(name=INPUT_NOISE, dtype=NOISE_DTYPE, shape=[None, latent_dim]),
        TensorSpec(name=INPUT_LABEL, dtype=LABEL_DTYPE, shape=[None]),
    ]
    if num_codes:
        inputs.append(TensorSpec(name=INPUT_CODES, dtype=CODES_DTYPE, shape=[None, num_codes]))
    outputs = [TensorSpec(name=OUTPUT_IMAGE, dtype=IMAGE_DTYPE, shape=[None, *image_shape])]
    return inputs, outputs


def judge_signature(
    image_shape: tuple[int, int, int], num_classes: int
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The ONNX inputs and outputs of a model's judge: uint8 images exactly as the generator makes them
    (``[N, H, W, C]``, 255 = ink) in, float32 probabilities ``[N, num_classes]`` (rows sum to 1) out."""
    inputs = [TensorSpec(name=JUDGE_INPUT, dtype=IMAGE_DTYPE, shape=[None, *image_shape])]
    outputs = [TensorSpec(name=JUDGE_OUTPUT, dtype=PROBABILITY_DTYPE, shape=[None, num_classes])]
    return inputs, outputs
