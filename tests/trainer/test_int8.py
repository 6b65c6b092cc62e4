"""INT8 twins (trainer.quantize, trainer.int8): a QDQ model the service loads and serves, published only
when it passes the quality gate against its FP32 source; refused with a one-line reason otherwise."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import pytest

import cgan_contract as contract
from cgan_contract import runner
from cgan_testing.fakes import build_conv_generator, write_version
from trainer.evaluation.judge import CNNConfig
from trainer.export import ExportError
from trainer.int8 import QualityGate, publish_int8
from trainer.onnx_rewrite import optimize
from trainer.quantize import calibration_batches, quantize

TINY = CNNConfig(filters=(8,), dense=16, dropout=0.0, epochs=2, min_steps=0, max_shift=0, max_train=600)


def quality(label_accuracy=0.95, fid_ratio=2.0, gan_train=0.90) -> contract.Quality:
    return contract.Quality(
        samples_per_class=10,
        label_accuracy=label_accuracy,
        per_class_accuracy=[label_accuracy] * 10,
        judge_test_accuracy=0.98,
        fid=fid_ratio,
        fid_floor=1.0,
        fid_ratio=fid_ratio,
        gan_train_accuracy=gan_train,
        real_train_accuracy=0.95,
        diversity_ratio=0.9,
        mode_collapse=False,
        evaluated_at=datetime.now(UTC),
    )


def fake_evaluate(int8_quality: contract.Quality, calls: list[Path] | None = None):
    """An ``evaluate`` that scores FP32 cards with :func:`quality` defaults and INT8 ones as given."""

    def evaluate(model_dir, write=True, **options):
        card = contract.read_card(Path(model_dir))
        assert options.get("augmentation") is False, "the gate does not read the augmentation value"
        if calls is not None:
            calls.append(Path(model_dir))
        return (int8_quality if card.precision == "int8" else quality()), "report"

    return evaluate


@pytest.fixture
def fp32_dir(tmp_path: Path) -> Path:
    return write_version(
        tmp_path / "models", "digits", 1, onnx_bytes=build_conv_generator(), dataset="mnist-5k"
    )


def test_quantized_twin_is_qdq_int8_with_the_pixel_tail_left_fp32():
    fp32 = optimize(onnx.load_from_string(build_conv_generator()))[0].SerializeToString()  # as exported
    int8 = quantize(fp32, latent_dim=8, num_classes=10)
    model = onnx.load_from_string(int8)
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    weights = {t.name: t.data_type for t in model.graph.initializer}
    dequantized = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights]
    assert any(weights[n.input[0]] == onnx.TensorProto.INT8 for n in dequantized)  # per-channel int8 weights
    # From the output activation on, the pixel rule runs as in the FP32 graph (one QuantizeLinear to
    # uint8 by 1/255 there, trainer.onnx_rewrite.sigmoid_pixel_tail): no other Q/DQ downstream of it.
    downstream = {n.output[0] for n in model.graph.node if n.op_type in ("Tanh", "Sigmoid")}
    assert downstream
    for node in model.graph.node:
        if downstream.intersection(node.input):
            assert node.op_type != "DequantizeLinear", node.name
            assert node.op_type != "QuantizeLinear" or node.output[0] == contract.OUTPUT_IMAGE, node.name
            downstream.update(node.output)
    assert contract.OUTPUT_IMAGE in downstream
    feed = calibration_batches(8, 10, images=200, seed=123)[0]
    want = runner.run(runner.open_session(fp32), feed["label"], feed["z"]).astype(int)
    got = runner.run(runner.open_session(int8), feed["label"], feed["z"])
    assert got.dtype == np.uint8 and got.shape == want.shape
    # Close, not equal (the gate judges how close is enough): well under what another seed changes.
    assert np.abs(got.astype(int) - want).mean() < 0.25 * np.abs(want - want[::-1]).mean()


def test_passing_twin_is_the_next_version_and_the_service_serves_it(fp32_dir: Path):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.config import Settings

    calls: list[Path] = []
    result = publish_int8(fp32_dir, evaluate=fake_evaluate(quality(label_accuracy=0.946), calls))
    assert result.version_dir == fp32_dir.parent / "2"
    card = contract.read_card(result.version_dir)
    assert card.precision == "int8" and card.quantized_from == 1 and card.quality is not None
    gate = card.gate  # the verdict and both sides' figures travel with the twin
    assert gate is not None and gate.passed and gate.against_version == 1
    assert gate.against_sha256 == contract.read_card(fp32_dir).sha256
    assert gate.int8.label_accuracy == 0.946 and gate.fp32.label_accuracy == 0.95
    assert (gate.label_accuracy_drop, gate.fid_ratio_increase, gate.gan_train_drop) == (0.005, 0.10, 0.005)
    assert contract.read_card(fp32_dir).precision == "fp32"  # older cards and fp32 ones read as fp32
    assert calls[0] == fp32_dir and len(calls) == 2
    assert not [p for p in fp32_dir.parent.iterdir() if p.name.startswith(".")]

    settings = Settings(models_dir=fp32_dir.parent.parent, bundled_models=False, reload_interval=0)
    with TestClient(create_app(settings)) as client:
        served = client.get("/v1/models/digits").json()
        assert served["card"]["precision"] == "int8" and served["card"]["version"] == 2
        response = client.post("/generate", json={"label": 3, "n": 4, "seed": 1, "format": "npy"})
        assert response.status_code == 200, response.text
        assert response.headers["x-model-version"] == "2"


@pytest.mark.parametrize(
    ("int8_quality", "phrase"),
    [
        (quality(label_accuracy=0.944), "label accuracy 94.4% vs 95.0% (-0.6 points, allowed -0.5)"),
        (quality(fid_ratio=2.21), "FID ratio 2.21 vs 2.00 (+10.5%, allowed +10%)"),
        (quality(gan_train=0.89), "GAN-train 89.0% vs 90.0% (-1.0 points, allowed -0.5)"),
    ],
)
def test_gate_refuses_each_figure_and_publishes_nothing(fp32_dir, int8_quality, phrase):
    with pytest.raises(ExportError) as caught:
        publish_int8(fp32_dir, evaluate=fake_evaluate(int8_quality))
    message = str(caught.value)
    assert "\n" not in message and "misses the quality gate" in message and phrase in message
    assert sorted(p.name for p in fp32_dir.parent.iterdir()) == ["1"]


def test_gate_limits_are_inclusive():
    gate = QualityGate()
    assert gate.misses(quality(), quality(label_accuracy=0.945, fid_ratio=2.2, gan_train=0.895)) == []
    assert len(gate.misses(quality(), quality(label_accuracy=0.9, fid_ratio=3.0, gan_train=0.5))) == 3


def test_real_evaluation_with_an_absurd_threshold_refuses(fp32_dir, tmp_path):
    """The real evaluate (tiny judge and probe) on both; a gate no model can pass refuses by FID."""
    pytest.importorskip("tensorflow")
    options = dict(samples_per_class=12, judge_config=TINY, probe_config=TINY, probe_runs=1)
    with pytest.raises(ExportError, match=r"misses the quality gate: .*FID ratio .*allowed -100%"):
        publish_int8(
            fp32_dir, gate=QualityGate(fid_ratio_increase=-1.0), cache_dir=tmp_path / "judge", **options
        )
    assert contract.read_card(fp32_dir).quality.samples_per_class == 12  # the FP32 twin was evaluated
    assert sorted(p.name for p in fp32_dir.parent.iterdir()) == ["1"]


def test_train_int8_refusal_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    pytest.importorskip("tensorflow")
    import trainer.evaluation
    from trainer.cli import main

    monkeypatch.setattr(trainer.evaluation, "evaluate", fake_evaluate(quality(label_accuracy=0.5)))
    tiny = [
        "--variant",
        "cgan",
        "--arch",
        "dense",
        "--batch-size",
        "8",
        "--latent-dim",
        "8",
        "--no-jit",
        "--quiet",
    ]
    code = main(
        ["train", *tiny, "--steps", "2", "--name", "q", "--out", str(tmp_path / "models")]
        + ["--work-dir", str(tmp_path / "runs"), "--int8", "--gate-samples-per-class", "10"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith(
        "cgan-train train: error: int8 twin of q v1 misses the quality gate: label accuracy"
    )
    assert "Traceback" not in "\n".join(err)
    assert sorted(p.name for p in (tmp_path / "models" / "q").iterdir()) == ["1"]  # the FP32 export stays
