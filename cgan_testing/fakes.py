"""Tiny contract-conforming ONNX generators and model directories, built with onnx.helper (no TensorFlow).

Shared by the tests (through fixtures in tests/service/conftest.py, or imported) and by bench/ (the CI
short forms of the drills and load scripts): a plain module, so nobody imports a conftest.py as a library.
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
    num_codes: int = 0,
    batch: int | str = "N",
    label_type: int = TensorProto.INT64,
) -> bytes:
    """image = uint8(clip(round((tanh(z @ W + E[label]) + 1) * 127.5))) reshaped to [N, H, W, C].

    With ``num_codes`` = k it takes a third input ``codes`` float32 [N, k] and adds ``codes @ Wc`` to the
    logits, strongly enough that moving one code visibly changes every image.
    ``noise_name``, ``graph_latent_dim``, ``float_output``, ``batch`` (a fixed batch size instead of ``N``)
    and ``label_type`` break the contract on purpose for the drills.
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
        helper.make_node("Add", ["zw", "e"], ["logits" if not num_codes else "content"]),
        helper.make_node("Tanh", ["logits"], ["t"]),
        helper.make_node("Add", ["t", "one"], ["t1"]),
        helper.make_node("Mul", ["t1", "half_range"], ["scaled"]),
        helper.make_node("Round", ["scaled"], ["rounded"]),
        helper.make_node("Clip", ["rounded", "lo", "hi"], ["clipped"]),
    ]
    inputs = [
        helper.make_tensor_value_info(noise_name, TensorProto.FLOAT, [batch, graph_latent_dim]),
        helper.make_tensor_value_info(contract.INPUT_LABEL, label_type, [batch]),
    ]
    if num_codes:
        style = (3.0 * rng.standard_normal((num_codes, pixels))).astype(np.float32)
        initializers.append(numpy_helper.from_array(style, "Wc"))
        nodes[3:3] = [
            helper.make_node("MatMul", [contract.INPUT_CODES, "Wc"], ["cw"]),
            helper.make_node("Add", ["content", "cw"], ["logits"]),
        ]
        inputs.append(
            helper.make_tensor_value_info(contract.INPUT_CODES, TensorProto.FLOAT, [batch, num_codes])
        )
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
        inputs,
        [helper.make_tensor_value_info(contract.OUTPUT_IMAGE, out_type, [batch, *image_shape])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    model.ir_version = 8  # what every onnxruntime >= 1.14 reads
    onnx.checker.check_model(model)
    return model.SerializeToString()


def style_codes(k: int) -> list[contract.StyleCode]:
    """The codes of a fake InfoGAN card: ``slant`` in [-2, 2] (a non-default range), then ``c1``, ``c2``..."""
    return [contract.StyleCode(name="slant", low=-2.0, high=2.0)] + [
        contract.StyleCode(name=f"c{j}") for j in range(1, k)
    ]


def build_judge(
    num_classes: int = 10,
    image_shape: tuple[int, int, int] = IMAGE_SHAPE,
    *,
    target: int = 0,
    pixel: int | None = 0,
    confidence: float = 1.0,
    decoy: int | None = None,
) -> bytes:
    """A judge whose confidence the test controls: class ``target`` gets probability ``p`` and class
    ``decoy`` (default: the next one) gets ``1 - p``, with ``p`` = pixel ``pixel`` (flat index) / 255 of the
    image, or the constant ``confidence`` when ``pixel`` is None. So a test knows exactly which images it
    accepts; and since the most probable class is the decoy whenever ``p < 0.5``, "the probability of the
    requested class" and "the largest probability" differ for half the images, not only for other labels.
    """
    pixels = int(np.prod(image_shape))
    target_row = np.zeros((1, num_classes), np.float32)
    target_row[0, target] = 1.0
    rest = np.zeros((1, num_classes), np.float32)
    rest[0, (target + 1) % num_classes if decoy is None else decoy] = 1.0
    initializers = [
        numpy_helper.from_array(np.array([-1, pixels], np.int64), "flat_shape"),
        numpy_helper.from_array(np.array([pixel or 0], np.int64), "which"),
        numpy_helper.from_array(np.array(255.0, np.float32), "full"),
        numpy_helper.from_array(target_row - rest, "spread"),
        numpy_helper.from_array(rest[0], "rest"),
    ]
    nodes = [
        helper.make_node("Cast", [contract.JUDGE_INPUT], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["as_float", "flat_shape"], ["flat"]),
    ]
    if pixel is None:
        # The constant with the batch's shape [N, 1]: a pixel column times zero, plus the constant.
        initializers.append(numpy_helper.from_array(np.array([[confidence]], np.float32), "constant"))
        nodes += [
            helper.make_node("Gather", ["flat", "which"], ["column"], axis=1),
            helper.make_node("Mul", ["column", "full"], ["zeroish"]),
            helper.make_node("Sub", ["zeroish", "zeroish"], ["zero"]),
            helper.make_node("Add", ["zero", "constant"], ["p"]),
        ]
    else:
        nodes += [
            helper.make_node("Gather", ["flat", "which"], ["column"], axis=1),
            helper.make_node("Div", ["column", "full"], ["p"]),
        ]
    nodes += [
        helper.make_node("MatMul", ["p", "spread"], ["scaled"]),
        helper.make_node("Add", ["scaled", "rest"], [contract.JUDGE_OUTPUT]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_judge",
        [helper.make_tensor_value_info(contract.JUDGE_INPUT, TensorProto.UINT8, ["N", *image_shape])],
        [helper.make_tensor_value_info(contract.JUDGE_OUTPUT, TensorProto.FLOAT, ["N", num_classes])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def judge_section(judge_bytes: bytes, num_classes: int = 10, **overrides: object) -> contract.JudgeSection:
    inputs, outputs = contract.judge_signature(IMAGE_SHAPE, num_classes)
    fields: dict[str, object] = {
        "sha256": hashlib.sha256(judge_bytes).hexdigest(),
        "inputs": inputs,
        "outputs": outputs,
        "dataset": "synthetic",
        "test_accuracy": 1.0,
    }
    return contract.JudgeSection(**(fields | overrides))


def make_card(name: str, version: int, sha256: str, **overrides: object) -> contract.ModelCard:
    latent_dim = int(overrides.pop("latent_dim", LATENT_DIM))
    image_shape = tuple(overrides.pop("image_shape", IMAGE_SHAPE))
    codes = overrides.get("codes", [])
    inputs, outputs = contract.signature(latent_dim, image_shape, len(codes))  # type: ignore[arg-type]
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
    num_codes: int = 0,
    judge_bytes: bytes | None = None,
    **card_overrides: object,
) -> Path:
    """Publish ``models_dir/name/version`` as the trainer does: temp dir, then rename (or in place).

    ``card_overrides`` go into model.json; ``sha256="..."`` there replaces the real digest. ``num_codes``
    = k publishes a generator with k style codes (:func:`style_codes` on its card).


    ``card_overrides`` go into model.json; ``sha256="..."`` there replaces the real digest. ``judge_bytes``
    is written as judge.onnx and declared on the card (unless ``judge=`` is given there).
    """
    classes = card_overrides.get("class_names", DIGITS)
    if num_codes:
        card_overrides.setdefault("codes", style_codes(num_codes))
        card_overrides.setdefault("variant", "infogan")
    if onnx_bytes is None:
        onnx_bytes = build_generator(num_classes=len(classes), num_codes=num_codes)  # type: ignore[arg-type]
    data = onnx_bytes
    final = models_dir / name / str(version)
    target = final.with_name(f".tmp-{version}") if atomic else final
    target.mkdir(parents=True)
    (target / contract.MODEL_FILE).write_bytes(data)
    if judge_bytes is not None:
        (target / contract.JUDGE_FILE).write_bytes(judge_bytes)
        card_overrides.setdefault("judge", judge_section(judge_bytes, len(classes)))  # type: ignore[arg-type]
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
