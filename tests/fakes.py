"""Tiny contract-conforming ONNX generators and model directories, built with onnx.helper (no TensorFlow).

Shared by the tests (through fixtures in tests/service/conftest.py, or imported) and by bench/ (the CI
short form of the overload drill): a plain module, so nobody imports a conftest.py as a library.
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import cgan_contract as contract
from trainer.data import DIGITS, FASHION  # noqa: F401 (re-exported for tests and bench)

LATENT_DIM = 8
IMAGE_SHAPE = (28, 28, 1)


def build_generator(
    latent_dim: int = LATENT_DIM,
    num_classes: int = 10,
    image_shape: tuple[int, int, int] = IMAGE_SHAPE,
    *,
    weights_seed: int = 0,
    noise_name: str = contract.INPUT_NOISE,
    graph_latent_dim: int | None = None,
    float_output: bool = False,
) -> bytes:
    """image = uint8(clip(round((tanh(z @ W + E[label]) + 1) * 127.5))) reshaped to [N, H, W, C].

    ``noise_name``, ``graph_latent_dim`` and ``float_output`` break the contract on purpose for the drills.
    """
    rng = np.random.default_rng(weights_seed)
    pixels = int(np.prod(image_shape))
    graph_latent_dim = graph_latent_dim or latent_dim
    weights = (rng.standard_normal((graph_latent_dim, pixels)) / np.sqrt(graph_latent_dim)).astype(np.float32)
    # Mostly background with ~15% ink per class, roughly a digit's ink coverage, so PNG sizes are realistic.
    embedding = (3.0 * rng.standard_normal((num_classes, pixels)) - 4.0).astype(np.float32)
    initializers = [
        numpy_helper.from_array(weights, "W"),
        numpy_helper.from_array(embedding, "E"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(127.5, np.float32), "half_range"),
        numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
        numpy_helper.from_array(np.array(255.0, np.float32), "hi"),
        numpy_helper.from_array(np.array([-1, *image_shape], np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("MatMul", [noise_name, "W"], ["zw"]),
        helper.make_node("Gather", ["E", contract.INPUT_LABEL], ["e"], axis=0),
        helper.make_node("Add", ["zw", "e"], ["logits"]),
        helper.make_node("Tanh", ["logits"], ["t"]),
        helper.make_node("Add", ["t", "one"], ["t1"]),
        helper.make_node("Mul", ["t1", "half_range"], ["scaled"]),
        helper.make_node("Round", ["scaled"], ["rounded"]),
        helper.make_node("Clip", ["rounded", "lo", "hi"], ["clipped"]),
    ]
    if float_output:
        nodes.append(helper.make_node("Reshape", ["clipped", "shape"], [contract.OUTPUT_IMAGE]))
        out_type = TensorProto.FLOAT
    else:
        nodes.append(helper.make_node("Cast", ["clipped"], ["pixels"], to=TensorProto.UINT8))
        nodes.append(helper.make_node("Reshape", ["pixels", "shape"], [contract.OUTPUT_IMAGE]))
        out_type = TensorProto.UINT8
    graph = helper.make_graph(
        nodes,
        "tiny_generator",
        [
            helper.make_tensor_value_info(noise_name, TensorProto.FLOAT, ["N", graph_latent_dim]),
            helper.make_tensor_value_info(contract.INPUT_LABEL, TensorProto.INT64, ["N"]),
        ],
        [helper.make_tensor_value_info(contract.OUTPUT_IMAGE, out_type, ["N", *image_shape])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    model.ir_version = 8  # what every onnxruntime >= 1.14 reads
    onnx.checker.check_model(model)
    return model.SerializeToString()


def make_card(name: str, version: int, sha256: str, **overrides: object) -> contract.ModelCard:
    latent_dim = int(overrides.pop("latent_dim", LATENT_DIM))
    image_shape = tuple(overrides.pop("image_shape", IMAGE_SHAPE))
    inputs, outputs = contract.signature(latent_dim, image_shape)
    fields: dict[str, object] = {
        "name": name,
        "version": version,
        "variant": "cgan",
        "arch": "tiny-test",
        "dataset": "synthetic",
        "class_names": DIGITS,
        "latent_dim": latent_dim,
        "image_shape": image_shape,
        "inputs": inputs,
        "outputs": outputs,
        "opset": 17,
        "sha256": sha256,
        "created_at": datetime.now(UTC),
        "trainer_version": "test",
    }
    fields.update(overrides)
    return contract.ModelCard(**fields)


def write_version(
    models_dir: Path,
    name: str = "digits",
    version: int = 1,
    *,
    onnx_bytes: bytes | None = None,
    card: bool = True,
    atomic: bool = True,
    **card_overrides: object,
) -> Path:
    """Publish ``models_dir/name/version`` as the trainer does: temp dir, then rename (or in place).

    ``card_overrides`` go into model.json; ``sha256="..."`` there replaces the real digest.
    """
    classes = card_overrides.get("class_names", DIGITS)
    data = onnx_bytes if onnx_bytes is not None else build_generator(num_classes=len(classes))  # type: ignore[arg-type]
    final = models_dir / name / str(version)
    target = final.with_name(f".tmp-{version}") if atomic else final
    target.mkdir(parents=True)
    (target / contract.MODEL_FILE).write_bytes(data)
    if card:
        sha = str(card_overrides.pop("sha256", hashlib.sha256(data).hexdigest()))
        (target / contract.CARD_FILE).write_text(
            contract.card_json(make_card(name, version, sha, **card_overrides))
        )
    if atomic:
        os.rename(target, final)
    return final


def build_conv_generator(
    latent_dim: int = LATENT_DIM, num_classes: int = 10, *, weights_seed: int = 0
) -> bytes:
    """A tiny DCGAN-shaped contract generator, laid out as tf2onnx writes the trainer's conv generator:
    dense -> 7x7 -> two stride-2 ConvTransposes, each with inference BatchNorm (per-channel Mul/Add), a
    conditional gain/bias by label in NHWC between Transposes, LeakyReLU -> 3x3 Conv -> tanh -> pixel tail
    with Min/Max. What :mod:`trainer.onnx_rewrite` and :mod:`trainer.quantize` are tested on."""
    rng = np.random.default_rng(weights_seed)
    widths = (8, 6, 4)

    def normal(*shape: int, scale: float = 1.0) -> np.ndarray:
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    inits = {
        "W0": normal(latent_dim, widths[0] * 49, scale=1 / np.sqrt(latent_dim)),
        "T1": normal(widths[0], widths[1], 4, 4, scale=0.3),
        "T2": normal(widths[1], widths[2], 4, 4, scale=0.3),
        "K3": normal(1, widths[2], 3, 3, scale=0.3),
        "b3": normal(1, scale=0.1),
        "shape0": np.array([-1, widths[0], 7, 7], np.int64),
        "one": np.array(1.0, np.float32),
        "half_range": np.array(127.5, np.float32),
        "lo": np.array(0.0, np.float32),
        "hi": np.array(255.0, np.float32),
        "to_nhwc": np.array([-1, 28, 28, 1], np.int64),
    }
    nodes = [
        helper.make_node("MatMul", [contract.INPUT_NOISE, "W0"], ["d0"]),
        helper.make_node("Reshape", ["d0", "shape0"], ["x0"]),
    ]
    x = "x0"
    for i, channels in ((1, widths[1]), (2, widths[2])):
        inits[f"scale{i}"] = (0.5 + rng.random((1, channels, 1, 1))).astype(np.float32)
        inits[f"shift{i}"] = normal(1, channels, 1, 1, scale=0.1)
        inits[f"G{i}"] = (0.5 + rng.random((num_classes, channels))).astype(np.float32)
        inits[f"B{i}"] = normal(num_classes, channels, scale=0.1)
        inits[f"cshape{i}"] = np.array([-1, 1, 1, channels], np.int64)
        nodes += [
            helper.make_node(
                "ConvTranspose",
                [x, f"T{i}"],
                [f"ct{i}"],
                strides=[2, 2],
                pads=[1, 1, 1, 1],
                kernel_shape=[4, 4],
            ),
            helper.make_node("Mul", [f"ct{i}", f"scale{i}"], [f"bn{i}a"]),
            helper.make_node("Add", [f"bn{i}a", f"shift{i}"], [f"bn{i}"]),
            helper.make_node("Transpose", [f"bn{i}"], [f"nhwc{i}"], perm=[0, 2, 3, 1]),
            helper.make_node("Gather", [f"G{i}", contract.INPUT_LABEL], [f"g{i}flat"], axis=0),
            helper.make_node("Reshape", [f"g{i}flat", f"cshape{i}"], [f"g{i}"]),
            helper.make_node("Gather", [f"B{i}", contract.INPUT_LABEL], [f"b{i}flat"], axis=0),
            helper.make_node("Reshape", [f"b{i}flat", f"cshape{i}"], [f"b{i}"]),
            helper.make_node("Mul", [f"nhwc{i}", f"g{i}"], [f"cg{i}"]),
            helper.make_node("Add", [f"cg{i}", f"b{i}"], [f"cb{i}"]),
            helper.make_node("LeakyRelu", [f"cb{i}"], [f"act{i}"], alpha=0.2),
            helper.make_node("Transpose", [f"act{i}"], [f"nchw{i}"], perm=[0, 3, 1, 2]),
        ]
        x = f"nchw{i}"
    nodes += [
        helper.make_node("Conv", [x, "K3", "b3"], ["c3"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Tanh", ["c3"], ["t"]),
        helper.make_node("Add", ["t", "one"], ["t1"]),
        helper.make_node("Mul", ["t1", "half_range"], ["scaled"]),
        helper.make_node("Reshape", ["scaled", "to_nhwc"], ["nhwc"]),
        helper.make_node("Round", ["nhwc"], ["rounded"]),
        helper.make_node("Min", ["rounded", "hi"], ["below"]),
        helper.make_node("Max", ["below", "lo"], ["clipped"]),
        helper.make_node("Cast", ["clipped"], [contract.OUTPUT_IMAGE], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_conv_generator",
        [
            helper.make_tensor_value_info(contract.INPUT_NOISE, TensorProto.FLOAT, ["N", latent_dim]),
            helper.make_tensor_value_info(contract.INPUT_LABEL, TensorProto.INT64, ["N"]),
        ],
        [helper.make_tensor_value_info(contract.OUTPUT_IMAGE, TensorProto.UINT8, ["N", 28, 28, 1])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
