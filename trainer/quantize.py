"""FP32 generator -> INT8 (onnxruntime static QDQ, per-channel weights), calibrated on its own inputs.

TF-free: onnx and onnxruntime only. The calibration feeds what the service feeds: labels cycling over the
classes and the noise (and style codes) of consecutive seeds by the contract's seed rule. The body is
quantized; the pixel tail (the last Conv's activation, ``tanh -> uint8``) and the label lookups stay FP32,
so the output keeps the contract's uint8 pixel rule exactly as the FP32 graph computes it.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import cgan_contract as contract

#: The first seed of the calibration inputs, far from the evaluation's and the parity check's seeds.
CALIBRATION_SEED = 7_000_000
CALIBRATION_IMAGES = 1000
CALIBRATION_BATCH = 100
_COMPUTE = ("Conv", "MatMul", "Gemm")

if TYPE_CHECKING:
    import onnx


def calibration_batches(
    latent_dim: int,
    num_classes: int,
    code_ranges: list[tuple[float, float]] | None = None,
    images: int = CALIBRATION_IMAGES,
    seed: int = CALIBRATION_SEED,
) -> list[dict[str, np.ndarray]]:
    """Feeds of ``CALIBRATION_BATCH`` images: image i has label ``i % num_classes`` and seed ``seed + i``."""
    feeds = []
    for start in range(0, images, CALIBRATION_BATCH):
        count = min(CALIBRATION_BATCH, images - start)
        seeds = contract.request_seeds(seed + start, count)
        feed = {
            contract.INPUT_NOISE: contract.noise_for_seeds(seeds, latent_dim),
            contract.INPUT_LABEL: (np.arange(start, start + count, dtype=np.int64) % num_classes),
        }
        if code_ranges:
            feed[contract.INPUT_CODES] = contract.codes_for_seeds(seeds, latent_dim, code_ranges)
        feeds.append(feed)
    return feeds


def kept_fp32(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes left in FP32: the label lookups and everything after the last Conv/MatMul."""
    nodes = list(model.graph.node)
    last = max((i for i, n in enumerate(nodes) if n.op_type in _COMPUTE), default=None)
    if last is None:
        return [n.name for n in nodes]
    downstream, frontier = set(), set(nodes[last].output)
    for node in nodes[last + 1 :]:
        if frontier.intersection(node.input):
            downstream.add(node.name)
            frontier.update(node.output)
    return [n.name for n in nodes if n.name in downstream or n.op_type == "Gather"]


def quantize(
    model_bytes: bytes,
    latent_dim: int,
    num_classes: int,
    code_ranges: list[tuple[float, float]] | None = None,
    images: int = CALIBRATION_IMAGES,
) -> bytes:
    """The INT8 QDQ twin of an FP32 contract generator, as bytes."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model = onnx.load_from_string(model_bytes)
    for i, node in enumerate(model.graph.node):
        node.name = node.name or f"node_{i}"  # nodes_to_exclude matches by name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(calibration_batches(latent_dim, num_classes, code_ranges, images))

        def get_next(self):
            return next(self._feeds, None)

    # quantize_static logs advice about pre-processing at WARNING for every call; we rewrite the graph
    # ourselves (trainer.onnx_rewrite) before it gets here.
    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="cgan-int8-") as tmp:
            out = Path(tmp) / "model.int8.onnx"
            quantize_static(
                model,
                out,
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=kept_fp32(model),
                calibrate_method=CalibrationMethod.MinMax,
            )
            return out.read_bytes()
    finally:
        quiet.setLevel(level)
