"""Several versions of a model loaded at once (the newest MODEL_VERSIONS), and requests that pin one."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import cgan_contract as contract


@pytest.fixture
def root(tmp_path: Path, publish, build_onnx) -> Path:
    """digits v1 and v2, with different weights (so their images differ)."""
    models = tmp_path / "models"
    models.mkdir()
    publish(models, "digits", 1, onnx_bytes=build_onnx(weights_seed=1))
    publish(models, "digits", 2, onnx_bytes=build_onnx(weights_seed=2))
    return models


def _npy(client: TestClient, **body: object) -> tuple[int, np.ndarray]:
    response = client.post("/generate", json={"label": 3, "n": 4, "seed": 8, "format": "npy", **body})
    assert response.status_code == 200, response.text
    return int(response.headers["x-model-version"]), np.load(io.BytesIO(response.content))


def test_both_versions_served_and_pinnable_everywhere(root: Path, open_client) -> None:
    with open_client(root) as client:
        newest_version, newest = _npy(client)
        v1_version, v1 = _npy(client, version=1)
        v2_version, v2 = _npy(client, version=2)
        assert (newest_version, v1_version, v2_version) == (2, 1, 2)
        assert np.array_equal(newest, v2) and not np.array_equal(v1, v2)

        png = client.get("/generate", params={"label": "3", "n": 4, "seed": 8, "version": 1})
        assert png.status_code == 200 and png.headers["x-model-version"] == "1"
        assert (
            png.content
            == client.post("/generate", json={"label": 3, "n": 4, "seed": 8, "version": 1}).content
        )

        archive = client.post("/dataset", json={"per_label": 2, "labels": [3], "seed": 8, "version": 1})
        assert archive.status_code == 200 and archive.headers["x-model-version"] == "1"
        assert archive.headers["content-disposition"].endswith('digits-v1-seed8.npz"')
        assert np.array_equal(np.load(io.BytesIO(archive.content))["x"], v1[:2])

        card = client.get("/v1/models/digits").json()
        assert (card["version"], card["versions"], card["card"]["version"]) == (2, [2, 1], 2)
        pinned = client.get("/v1/models/digits", params={"version": 1}).json()
        assert (pinned["version"], pinned["card"]["version"]) == (1, 1)
        assert client.get("/v1/models").json()["models"][0]["versions"] == [2, 1]
        assert client.get("/v2/models/digits/versions/1").json()["versions"] == ["2", "1"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/generate", {"json": {"label": 1, "version": 5}}),
        ("GET", "/generate", {"params": {"label": "1", "version": 5}}),
        ("POST", "/dataset", {"json": {"per_label": 1, "version": 5}}),
        ("GET", "/v1/models/digits", {"params": {"version": 5}}),
    ],
)
def test_unloaded_version_is_404_listing_the_loaded_ones(
    root: Path, open_client, method, path, kwargs
) -> None:
    with open_client(root) as client:
        response = client.request(method, path, **kwargs)
        assert response.status_code == 404
        assert response.json() == {
            "detail": "version: 'digits' v5 is not loaded; loaded: 2, 1",
            "field": "version",
        }


@pytest.mark.parametrize("version", [0, -1, "2", 1.5, True])
def test_bad_version_values_name_the_field(root: Path, open_client, version: object) -> None:
    with open_client(root) as client:
        for path, body in (("/generate", {"label": 1}), ("/dataset", {"per_label": 1})):
            response = client.post(path, json={**body, "version": version})
            assert response.status_code == 422 and response.json()["field"] == "version", response.text
        if version != "2":  # a query string is text: "2" is a fine version there
            response = client.get("/generate", params={"label": "1", "version": str(version)})
            assert response.status_code == 422 and response.json()["field"] == "version"


def test_only_the_newest_k_stay_loaded(root: Path, publish, build_onnx, open_client, runtime, metric) -> None:
    with open_client(root, model_versions=2) as client:
        _, v1 = _npy(client, version=1)
        publish(root, "digits", 3, onnx_bytes=build_onnx(weights_seed=3))
        assert runtime(client).registry.scan() == {"digits": 3}
        assert list(runtime(client).registry.loaded["digits"]) == [3, 2]
        assert _npy(client)[0] == 3 and _npy(client, version=2)[0] == 2
        gone = client.post("/generate", json={"label": 1, "version": 1})
        assert gone.status_code == 404 and gone.json()["detail"].endswith("loaded: 3, 2")
        info = {"model": "digits", "version": "1"}
        samples = runtime(client).metrics.registry.get_sample_value
        assert samples("cgan_model_info", {**info, "sha256": _sha(root, 1)}) is None

        # Removing a loaded version brings the next older one back, to keep K loaded.
        shutil.rmtree(root / "digits" / "3")
        assert runtime(client).registry.scan() == {"digits": 2}
        assert list(runtime(client).registry.loaded["digits"]) == [2, 1]
        assert np.array_equal(_npy(client, version=1)[1], v1)


def test_k_of_one_serves_only_the_newest(root: Path, open_client) -> None:
    with open_client(root, model_versions=1) as client:
        assert _npy(client)[0] == 2
        assert client.post("/generate", json={"label": 1, "version": 1}).status_code == 404
        assert client.get("/v1/models/digits").json()["versions"] == [2]


def test_a_bad_newest_version_leaves_k_good_ones(root: Path, publish, open_client, runtime) -> None:
    publish(root, "digits", 3, sha256="f" * 64)
    with open_client(root, model_versions=2) as client:
        assert list(runtime(client).registry.loaded["digits"]) == [2, 1]
        assert client.get("/readyz").json()["refused"] == {"digits/3": "sha256"}  # no paths (SECURITY.md)


def _sha(root: Path, version: int) -> str:
    return contract.read_card(root / "digits" / str(version)).sha256
