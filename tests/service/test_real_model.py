"""The service on a generator the trainer really exported (root fixture ``exported_model_dir``)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service import imaging


@pytest.fixture(scope="module")
def exported(request: pytest.FixtureRequest) -> Path:
    """MODELS_DIR with one model the trainer trained for a few steps and exported."""
    try:
        return Path(request.getfixturevalue("exported_model_dir"))
    except pytest.FixtureLookupError:
        pytest.skip("trainer fixture not available")


@pytest.fixture(scope="module")
def real_client(exported: Path, make_app) -> Iterator[TestClient]:
    with TestClient(make_app(exported)) as client:
        assert client.get("/readyz").status_code == 200, client.get("/readyz").text
        yield client


def _card(client: TestClient) -> dict:
    return client.get("/v1/models").json()["models"][0]["card"]


def test_real_model_png_grid(real_client: TestClient) -> None:
    card = _card(real_client)
    h, w, _ = card["image_shape"]
    response = real_client.post("/generate", json={"label": 0, "n": 16, "seed": 1, "model": card["name"]})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == imaging.grid_size(16, (h, w))


def test_real_model_npy_by_index_and_by_class_name(real_client: TestClient) -> None:
    card = _card(real_client)
    last = len(card["class_names"]) - 1
    body = {"n": 8, "seed": 3, "format": "npy", "model": card["name"]}
    by_index = np.load(io.BytesIO(real_client.post("/generate", json={**body, "label": last}).content))
    name = card["class_names"][last]
    by_name = np.load(io.BytesIO(real_client.post("/generate", json={**body, "label": name}).content))
    h, w, c = card["image_shape"]
    assert by_index.dtype == np.uint8 and by_index.shape == ((8, h, w) if c == 1 else (8, h, w, c))
    assert np.array_equal(by_index, by_name)
    single = real_client.post("/generate", json={**body, "label": last, "n": 1, "seed": 3 + 5})
    assert np.array_equal(by_index[5], np.load(io.BytesIO(single.content))[0])
