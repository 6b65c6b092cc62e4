"""The default model (issue #32, row 5): one rule over the current model set alone, so every worker, and a
worker that replaced a killed one, picks the same model. DEFAULT_MODEL; else the one model name MODELS_DIR
serves (over the bundled ones); else, with only bundled models, the bundled default (the digits model);
else none, and a request must name a model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from service.config import Settings
from service.metrics import Metrics
from service.models import ModelRegistry

#: The bundled digits model: the default while only bundled models serve, whatever else gets bundled.
BUNDLED_DEFAULT_MODEL = "mnist-5k-cgan-conv"


@pytest.fixture
def bundled_dir(tmp_path: Path, publish, build_onnx) -> Path:
    """A bundled root holding the digits default and a second bundled model (a future fashion one)."""
    root = tmp_path / "bundled"
    root.mkdir()
    publish(root, BUNDLED_DEFAULT_MODEL, 1, onnx_bytes=build_onnx(weights_seed=1))
    publish(root, "bundled-fashion", 1, onnx_bytes=build_onnx(weights_seed=2))
    return root


def _registry(models_dir: Path, **overrides: object) -> ModelRegistry:
    values: dict[str, object] = {"bundled_models": False, "default_model": None, "ort_intra_op_threads": 1}
    return ModelRegistry(Settings(models_dir=models_dir, **{**values, **overrides}), Metrics())


def _default(models_dir: Path, **settings: object) -> str | None:
    """The default a freshly started worker picks over these directories."""
    registry = _registry(models_dir, **settings)
    registry.scan()
    return registry.default_name()


def test_registries_built_independently_from_the_same_dirs_agree(models_dir: Path, publish) -> None:
    """A worker that has served since the start and one started later (kill -9, restart) agree."""
    long_lived = _registry(models_dir)
    long_lived.scan()
    assert long_lived.default_name() == "digits"
    publish(models_dir, "another", 1)
    long_lived.scan()
    assert long_lived.default_name() == _default(models_dir) is None
    # And back: with one model left, every worker defaults to it again.
    shutil.rmtree(models_dir / "another")
    long_lived.scan()
    assert long_lived.default_name() == _default(models_dir) == "digits"


def test_a_user_model_beats_the_bundled_default(
    tmp_path: Path, bundled_dir: Path, publish, open_client
) -> None:
    """``MODELS_DIR=models cgan-serve`` after training under a name of one's own."""
    models = tmp_path / "models"
    models.mkdir()
    publish(models, "mine", 1)
    with open_client(models, bundled_models=True, bundled_models_dir=bundled_dir) as client:
        response = client.post("/generate", json={"label": 9, "n": 16})
        assert response.status_code == 200, response.text
        assert response.headers["x-model"] == "mine"
        listing = client.get("/v1/models").json()
        assert listing["default"] == "mine"
        assert [m["name"] for m in listing["models"] if m["default"]] == ["mine"]


def test_with_only_bundled_models_the_digits_one_is_the_default(
    tmp_path: Path, bundled_dir: Path, open_client
) -> None:
    with open_client(tmp_path / "models", bundled_models=True, bundled_models_dir=bundled_dir) as client:
        assert sorted(client.get("/readyz").json()["models"]) == ["bundled-fashion", BUNDLED_DEFAULT_MODEL]
        response = client.post("/generate", json={"label": 9})
        assert response.status_code == 200, response.text
        assert response.headers["x-model"] == BUNDLED_DEFAULT_MODEL


def test_a_second_user_model_removes_the_implicit_default(
    tmp_path: Path, bundled_dir: Path, publish, open_client, runtime
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    publish(models, "mine", 1)
    roots = {"bundled_models": True, "bundled_models_dir": bundled_dir}
    with open_client(models, **roots) as client:
        assert client.post("/generate", json={"label": 1}).headers["x-model"] == "mine"
        publish(models, "yours", 1)
        runtime(client).registry.scan()
        response = client.post("/generate", json={"label": 1})
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith("model: several models are loaded ("), response.text
        assert "mine" in response.json()["detail"] and "yours" in response.json()["detail"]
        assert client.get("/v1/models").json()["default"] is None
        assert _default(models, **roots) is None  # a worker started now agrees
        # Naming one still works, and DEFAULT_MODEL settles it for every worker.
        assert client.post("/generate", json={"label": 1, "model": "yours"}).status_code == 200
    assert _default(models, default_model="yours", **roots) == "yours"
    assert _default(models, default_model=BUNDLED_DEFAULT_MODEL, **roots) == BUNDLED_DEFAULT_MODEL
