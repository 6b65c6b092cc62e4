"""The bundled models as a second root: served when MODELS_DIR has none, superseded by MODELS_DIR's versions.

Tiny fake models stand in for the real bundle here (BUNDLED_MODELS_DIR points at a temp dir);
tests/test_bundled_model.py checks the real one that ships in service/bundled/.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from service.config import BUNDLED_DIR, Settings


@pytest.fixture
def bundled_dir(tmp_path: Path, publish, build_onnx) -> Path:
    """A bundled root holding ``digits`` v1 (weights seed 1, so its sha256 differs from MODELS_DIR's)."""
    root = tmp_path / "bundled"
    root.mkdir()
    publish(root, "digits", 1, onnx_bytes=build_onnx(weights_seed=1))
    return root


def _served(client) -> dict[str, tuple[int, str, str]]:
    listing = client.get("/v1/models").json()
    return {m["name"]: (m["version"], m["source"], m["card"]["sha256"]) for m in listing["models"]}


def _sha(root: Path, name: str, version: int) -> str:
    import cgan_contract as contract

    return contract.read_card(root / name / str(version)).sha256


@pytest.mark.parametrize("models_dir_state", ["missing", "empty"])
def test_bundled_models_serve_when_models_dir_has_none(
    open_client, tmp_path: Path, bundled_dir: Path, models_dir_state: str, caplog
) -> None:
    models = tmp_path / "models"
    if models_dir_state == "empty":
        models.mkdir()
    with (
        caplog.at_level(logging.INFO, logger="service"),
        open_client(models, bundled_models=True, bundled_models_dir=bundled_dir) as client,
    ):
        assert client.get("/readyz").status_code == 200
        assert _served(client) == {"digits": (1, "bundled", _sha(bundled_dir, "digits", 1))}
        response = client.post("/generate", json={"label": 9, "n": 16})
        assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
        assert (response.headers["x-model"], response.headers["x-model-version"]) == ("digits", "1")
    assert "loaded model digits v1 (bundled)" in caplog.text
    assert "ready: serving {'digits': 'v1 (bundled)'}" in caplog.text


def test_models_dir_wins_at_equal_version_and_newest_version_wins(
    open_client, tmp_path: Path, bundled_dir: Path, publish, build_onnx
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    publish(models, "digits", 1, onnx_bytes=build_onnx(weights_seed=2))
    with open_client(models, bundled_models=True, bundled_models_dir=bundled_dir) as client:
        # Same name, same version: MODELS_DIR's copy is served.
        assert _served(client) == {"digits": (1, "models_dir", _sha(models, "digits", 1))}
        # A newer bundled version beats an older MODELS_DIR one: one rule, newest version first.
        publish(bundled_dir, "digits", 2, onnx_bytes=build_onnx(weights_seed=3))
        client.app.state.runtime.registry.scan()
        assert _served(client) == {"digits": (2, "bundled", _sha(bundled_dir, "digits", 2))}
        # And a newer MODELS_DIR version beats that.
        publish(models, "digits", 3, onnx_bytes=build_onnx(weights_seed=4))
        client.app.state.runtime.registry.scan()
        assert _served(client) == {"digits": (3, "models_dir", _sha(models, "digits", 3))}


def test_a_trained_version_hot_swaps_the_bundled_one_in_and_out(
    open_client, tmp_path: Path, bundled_dir: Path, publish, build_onnx, caplog
) -> None:
    """The compose flow: the service starts on the bundle, the trainer publishes v1 of the same name."""
    models = tmp_path / "models"
    models.mkdir()
    with open_client(models, bundled_models=True, bundled_models_dir=bundled_dir) as client:
        registry = client.app.state.runtime.registry
        assert _served(client)["digits"][:2] == (1, "bundled")
        publish(models, "digits", 1, onnx_bytes=build_onnx(weights_seed=2))
        with caplog.at_level(logging.INFO, logger="service"):
            assert registry.scan() == {"digits": 1}
        assert _served(client) == {"digits": (1, "models_dir", _sha(models, "digits", 1))}
        assert "loaded model digits v1 (sha256" in caplog.text and "replacing v1 (bundled)" in caplog.text
        # Removing the trained version falls back to the bundled one, as to any older version.
        shutil.rmtree(models / "digits" / "1")
        registry.scan()
        assert _served(client) == {"digits": (1, "bundled", _sha(bundled_dir, "digits", 1))}


def test_other_names_are_served_side_by_side(
    open_client, tmp_path: Path, bundled_dir: Path, publish, fashion_classes
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    publish(models, "fashion", 4, class_names=fashion_classes)
    with open_client(
        models, bundled_models=True, bundled_models_dir=bundled_dir, default_model="fashion"
    ) as client:
        served = _served(client)
        assert {n: v[:2] for n, v in served.items()} == {
            "digits": (1, "bundled"),
            "fashion": (4, "models_dir"),
        }
        assert client.get("/v1/models/digits").json()["source"] == "bundled"
        assert client.get("/v1/models/fashion").json()["source"] == "models_dir"


def test_a_broken_bundled_version_is_refused_like_any_other(
    open_client, tmp_path: Path, bundled_dir: Path, publish
) -> None:
    publish(bundled_dir, "digits", 2, onnx_bytes=b"not an onnx graph")
    with open_client(tmp_path / "models", bundled_models=True, bundled_models_dir=bundled_dir) as client:
        assert _served(client)["digits"][:2] == (1, "bundled")
        refusals = client.app.state.runtime.registry.refusals
        assert any("bundled" in path and path.endswith("2") for path in refusals), refusals


def test_bundled_models_off(open_client, tmp_path: Path, bundled_dir: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    with open_client(models, bundled_models=False, bundled_models_dir=bundled_dir) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["reason"] == "no valid model version under MODELS_DIR"
        assert str(models) not in ready.text  # /readyz names no paths (SECURITY.md)
        assert client.get("/v1/models").json()["models"] == []
        assert client.post("/generate", json={"label": 9, "n": 1}).status_code == 503


def test_not_ready_names_both_roots(open_client, tmp_path: Path) -> None:
    empty = tmp_path / "bundled"
    empty.mkdir()
    with open_client(tmp_path / "models", bundled_models=True, bundled_models_dir=empty) as client:
        ready = client.get("/readyz")
        assert ready.json()["reason"] == "MODELS_DIR does not exist", ready.text
        assert str(tmp_path) not in ready.text  # the path goes to the log only
        empty.rmdir()
        client.app.state.runtime.registry.scan()
        reason = client.get("/readyz").json()["reason"]
        assert reason == "MODELS_DIR does not exist; the bundled models do not exist", reason


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BUNDLED_MODELS", raising=False)
    monkeypatch.delenv("BUNDLED_MODELS_DIR", raising=False)
    monkeypatch.setenv("MODELS_DIR", str(tmp_path))
    settings = Settings()
    assert settings.bundled_models is True and settings.bundled_models_dir == BUNDLED_DIR
    assert settings.model_roots == [(tmp_path, "models_dir"), (BUNDLED_DIR, "bundled")]
    monkeypatch.setenv("BUNDLED_MODELS", "0")
    monkeypatch.setenv("BUNDLED_MODELS_DIR", str(tmp_path / "elsewhere"))
    settings = Settings()
    assert settings.bundled_models is False and settings.model_roots == [(tmp_path, "models_dir")]
    assert settings.bundled_models_dir == tmp_path / "elsewhere"
    monkeypatch.setenv("BUNDLED_MODELS", "maybe")
    with pytest.raises(ValueError, match="bundled_models"):
        Settings()
