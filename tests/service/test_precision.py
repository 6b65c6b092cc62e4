"""PRECISION: which loaded version serves a request that names none. A gated INT8 twin is the default under
``auto``; ``fp32`` pins the FP32 source; a twin without a passed gate is never the default, only pinnable."""

from __future__ import annotations

from pathlib import Path

import pytest

import cgan_contract as contract


def _gate(passed: bool, against: int, against_sha256: str | None = None) -> contract.QualityGate:
    figures = contract.GateFigures(label_accuracy=0.99, fid_ratio=1.3, gan_train_accuracy=0.96)
    return contract.QualityGate(
        passed=passed,
        against_version=against,
        against_sha256=against_sha256,
        label_accuracy_drop=0.005,
        fid_ratio_increase=0.1,
        gan_train_drop=0.005,
        fp32=figures,
        int8=figures,
    )


def _twin(
    publish, build_onnx, models: Path, version: int, of: int, gate: contract.QualityGate | None
) -> None:
    publish(
        models,
        "digits",
        version,
        onnx_bytes=build_onnx(weights_seed=version),
        precision="int8",
        quantized_from=of,
        gate=gate,
    )


def _default_version(client) -> int:
    response = client.post("/generate", json={"label": 3, "n": 2, "seed": 1, "format": "npy"})
    assert response.status_code == 200, response.text
    listed = client.get("/v1/models/digits").json()["version"]
    assert int(response.headers["x-model-version"]) == listed
    return listed


@pytest.fixture
def models(tmp_path: Path, publish, build_onnx) -> Path:
    """digits v1 (FP32) and v2, its INT8 twin with a passed gate."""
    models = tmp_path / "models"
    publish(models, "digits", 1, onnx_bytes=build_onnx(weights_seed=1))
    _twin(publish, build_onnx, models, 2, of=1, gate=_gate(True, 1))
    return models


@pytest.mark.parametrize(("precision", "served"), [("auto", 2), ("int8", 2), ("fp32", 1)])
def test_precision_picks_the_default_version_and_both_stay_pinnable(
    models: Path, open_client, precision: str, served: int
) -> None:
    with open_client(models, precision=precision) as client:
        assert _default_version(client) == served
        for version in (1, 2):
            pinned = client.post("/generate", json={"label": 3, "n": 1, "version": version, "format": "npy"})
            assert pinned.headers["x-model-version"] == str(version)


@pytest.mark.parametrize(
    "gate", [None, _gate(False, 1), _gate(True, 3)], ids=["no gate", "gate missed", "gate of another version"]
)
@pytest.mark.parametrize("precision", ["auto", "int8"])
def test_a_twin_without_a_passed_gate_of_its_own_source_is_never_the_default(
    tmp_path: Path, publish, build_onnx, open_client, gate, precision: str
) -> None:
    models = tmp_path / "models"
    publish(models, "digits", 1, onnx_bytes=build_onnx(weights_seed=1))
    _twin(publish, build_onnx, models, 2, of=1, gate=gate)
    with open_client(models, precision=precision) as client:
        assert _default_version(client) == 1
        assert client.get("/v1/models/digits").json()["versions"] == [2, 1]


def test_a_retrain_wins_over_an_older_versions_twin_until_it_has_its_own(
    models: Path, publish, build_onnx, open_client
) -> None:
    publish(models, "digits", 3, onnx_bytes=build_onnx(weights_seed=3))
    with open_client(models) as client:
        assert _default_version(client) == 3
    with open_client(models, precision="int8") as client:
        assert _default_version(client) == 2
    _twin(publish, build_onnx, models, 4, of=3, gate=_gate(True, 3))
    with open_client(models) as client:
        assert _default_version(client) == 4


def test_a_trained_v1_is_served_over_the_bundled_v1s_twin(
    tmp_path: Path, publish, build_onnx, open_client
) -> None:
    bundled, models = tmp_path / "bundled", tmp_path / "models"
    publish(bundled, "digits", 1, onnx_bytes=build_onnx(weights_seed=1))
    _twin(publish, build_onnx, bundled, 2, of=1, gate=_gate(True, 1))
    publish(models, "digits", 1, onnx_bytes=build_onnx(weights_seed=5))
    with open_client(models, bundled_models=True, bundled_models_dir=bundled) as client:
        served = client.get("/v1/models/digits").json()
        assert (served["version"], served["source"], served["versions"]) == (1, "models_dir", [2, 1])


def test_a_gate_recording_another_sources_sha256_does_not_count(
    tmp_path: Path, publish, build_onnx, open_client
) -> None:
    models = tmp_path / "models"
    publish(models, "digits", 1, onnx_bytes=build_onnx(weights_seed=1))
    _twin(publish, build_onnx, models, 2, of=1, gate=_gate(True, 1, against_sha256="0" * 64))
    with open_client(models) as client:
        assert _default_version(client) == 1
    source = contract.read_card(models / "digits" / "1").sha256
    _twin(publish, build_onnx, models, 3, of=1, gate=_gate(True, 1, against_sha256=source))
    with open_client(models) as client:
        assert _default_version(client) == 3


def test_model_versions_counts_fp32_versions_so_the_source_of_a_twin_stays_loaded(
    models: Path, open_client
) -> None:
    with open_client(models, model_versions=1, precision="fp32") as client:
        assert client.get("/v1/models/digits").json()["versions"] == [2, 1]
        assert _default_version(client) == 1


def test_precision_is_checked_at_start() -> None:
    from pydantic import ValidationError

    from service.config import Settings

    with pytest.raises(ValidationError, match="precision"):
        Settings(precision="fp16")
