"""Export-time rewrites (trainer.onnx_rewrite): same numbers as the graph they replace, on tiny graphs laid
out as tf2onnx writes ours, and on a Keras conv generator through the real export (parity)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import cgan_contract as contract
from cgan_contract import runner
from cgan_testing.fakes import build_conv_generator
from trainer.onnx_rewrite import optimize

SEEDS = contract.request_seeds(100, 300)


def outputs(model: onnx.ModelProto, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run ``model`` with ``names`` exposed as graph outputs (intermediate float tensors included)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in names)
    return runner.open_session(probe.SerializeToString()).run(names, feed)


def contract_feed(latent_dim: int, n: int = 300) -> dict[str, np.ndarray]:
    return {
        contract.INPUT_NOISE: contract.noise_for_seeds(SEEDS[:n], latent_dim),
        contract.INPUT_LABEL: np.arange(n, dtype=np.int64) % 10,
    }


def test_conv_generator_rewrites_keep_its_numbers():
    original = onnx.load_from_string(build_conv_generator())
    rewritten, counts = optimize(original)
    assert counts["subpixel_conv_transpose"] == 2 and counts["fold_affine"] == 2
    assert counts["conv_on_phases"] == 1 and counts["clip_tail"] == 1 and counts["sigmoid_pixel_tail"] == 1
    ops = [n.op_type for n in rewritten.graph.node]
    assert "ConvTranspose" not in ops and "Tanh" not in ops and "Round" not in ops
    assert ops[-1] == "QuantizeLinear"  # the pixel rule in one step
    feed = contract_feed(8)
    # The float tensor before the pixel rule agrees to float rounding (tanh(x) = 2 sigmoid(2x) - 1) ...
    (want,), (got,) = outputs(original, ["t"], feed), outputs(rewritten, ["t"], feed)
    assert got.shape == want.shape == (300, 1, 28, 28)
    np.testing.assert_allclose(2 * got - 1, want, rtol=0, atol=2e-5)
    # ... so pixels differ by at most one grey level, and almost never.
    a = runner.run(runner.open_session(original.SerializeToString()), feed["label"], feed["z"]).astype(int)
    b = runner.run(runner.open_session(rewritten.SerializeToString()), feed["label"], feed["z"]).astype(int)
    assert np.abs(a - b).max() <= 1 and (a != b).mean() < 1e-3


@pytest.mark.parametrize(("stride", "kernel", "pad"), [(2, 4, 1), (2, 2, 0), (3, 3, 0)])
def test_subpixel_matches_conv_transpose_for_each_stride_kernel_and_pad(stride, kernel, pad):
    rng = np.random.default_rng(stride * 10 + kernel)
    weight = rng.standard_normal((5, 3, kernel, kernel)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    node = helper.make_node(
        "ConvTranspose",
        ["x", "w", "b"],
        ["y"],
        strides=[stride, stride],
        pads=[pad] * 4,
        kernel_shape=[kernel, kernel],
    )
    graph = helper.make_graph(
        [node],
        "ct",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", None, None, None])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rewritten, counts = optimize(model)
    assert counts["subpixel_conv_transpose"] == 1
    feed = {"x": rng.standard_normal((4, 5, 6, 6)).astype(np.float32)}
    (want,), (got,) = outputs(model, ["y"], feed), outputs(rewritten, ["y"], feed)
    assert got.shape == want.shape == (4, 3, 6 * stride, 6 * stride)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_unsupported_conv_transpose_is_left_alone():
    weight = np.ones((2, 2, 3, 3), np.float32)  # kernel 3 is no multiple of stride 2: no sub-pixel form
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node],
        "ct",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", None, None, None])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rewritten, counts = optimize(model)
    assert counts["subpixel_conv_transpose"] == 0
    assert [n.op_type for n in rewritten.graph.node] == ["ConvTranspose"]


def test_batchnorm_after_activation_folds_into_the_next_matmul():
    """The dense generator's layer: MatMul + bias -> LeakyReLU -> BatchNorm (Mul, Add) -> MatMul + bias."""
    rng = np.random.default_rng(3)
    inits = {
        "w1": rng.standard_normal((6, 5)).astype(np.float32),
        "b1": rng.standard_normal(5).astype(np.float32),
        "s": (0.5 + rng.random(5)).astype(np.float32),
        "t": rng.standard_normal(5).astype(np.float32),
        "w2": rng.standard_normal((5, 4)).astype(np.float32),
        "b2": rng.standard_normal(4).astype(np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"]),
        helper.make_node("Add", ["m1", "b1"], ["h1"]),
        helper.make_node("LeakyRelu", ["h1"], ["a1"], alpha=0.2),
        helper.make_node("Mul", ["a1", "s"], ["n1"]),
        helper.make_node("Add", ["n1", "t"], ["bn1"]),
        helper.make_node("MatMul", ["bn1", "w2"], ["m2"]),
        helper.make_node("Add", ["m2", "b2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rewritten, counts = optimize(model)
    assert counts["fold_affine_forward"] == 1
    assert [n.op_type for n in rewritten.graph.node] == ["MatMul", "Add", "LeakyRelu", "MatMul", "Add"]
    feed = {"x": rng.standard_normal((16, 6)).astype(np.float32)}
    (want,), (got,) = outputs(model, ["y"], feed), outputs(rewritten, ["y"], feed)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_keras_conv_generator_exports_rewritten_with_parity(tmp_path):
    """The real export path: Keras (ConvTranspose + conditional BatchNorm) -> tf2onnx -> rewrites -> the
    export's own parity check against Keras, then ours on other seeds."""
    tf = pytest.importorskip("tensorflow")
    import dataclasses

    from trainer.config import MODERN
    from trainer.export import export
    from trainer.variants import Spec, build

    gan = build("cgan", Spec(8, 3, (28, 28, 1), "conv"), dataclasses.replace(MODERN, cond_bn=True), seed=3)
    gan.compile()
    rng = np.random.default_rng(0)
    gan.train_step((tf.constant(rng.uniform(-1, 1, (4, 28, 28, 1)), "float32"), tf.constant([0, 1, 2, 0])))
    g = gan.export_generator
    version_dir = export(
        g,
        tmp_path,
        name="m",
        variant="cgan",
        arch="conv",
        dataset="test",
        class_names=["a", "b", "c"],
        latent_dim=8,
        image_shape=(28, 28, 1),
    )
    model = onnx.load(version_dir / contract.MODEL_FILE)
    ops = {n.op_type for n in model.graph.node}
    assert "ConvTranspose" not in ops and "DepthToSpace" in ops
    z = contract.noise(99, 12, 8)
    labels = np.arange(12, dtype=np.int64) % 3
    got = runner.run(runner.open_session(version_dir / contract.MODEL_FILE), labels, z).astype(int)
    want = contract.to_uint8(np.asarray(g([z, labels.astype("int32")], training=False))).astype(int)
    assert np.abs(got - want).max() <= 1
