"""An EBGAN the trainer trained (conv, a few steps through ``train()``) and exported is verified, loaded and
served like any other model: the same two inputs, ``/generate`` and ``/dataset``."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import cgan_contract as contract

pytest.importorskip("tensorflow")

NAME = "eb-conv"


@pytest.fixture(scope="module")
def ebgan_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer.config import TrainConfig
    from trainer.train import train

    root = tmp_path_factory.mktemp("ebgan")
    config = TrainConfig.for_dataset(
        "mnist-5k",
        variant="ebgan",
        arch="conv",
        steps=2,
        batch_size=8,
        latent_dim=16,
        name=NAME,
        out=root / "models",
        work_dir=root / "runs",
        progress=False,
    )
    result = train(config)  # export() inside refuses a model that fails the parity check
    assert result.model_dir == root / "models" / NAME / "1"
    assert [row["step"] for row in result.history] == [2]
    return root / "models"


@pytest.fixture(scope="module")
def client(ebgan_models: Path, make_app) -> Iterator[TestClient]:
    with TestClient(make_app(ebgan_models)) as test_client:
        assert test_client.get("/readyz").status_code == 200, test_client.get("/readyz").text
        yield test_client


def test_the_card_says_ebgan_and_the_signature_is_the_contracts(client: TestClient) -> None:
    (model,) = client.get("/v1/models").json()["models"]
    card = model["card"]
    assert (card["name"], card["variant"], card["arch"]) == (NAME, "ebgan", "conv")
    assert [i["name"] for i in card["inputs"]] == [contract.INPUT_NOISE, contract.INPUT_LABEL]
    assert card["training"]["recipe"]["loss"] == "ebgan"
    assert card["training"]["recipe"]["pt_weight"] == pytest.approx(0.1)


def test_generate_serves_the_exported_ebgan(client: TestClient) -> None:
    body = {"label": 7, "n": 6, "seed": 11, "format": "npy", "model": NAME}
    response = client.post("/generate", json=body)
    assert response.status_code == 200 and response.headers["x-model"] == NAME
    images = np.load(io.BytesIO(response.content))
    assert images.dtype == np.uint8 and images.shape == (6, 28, 28)
    # The seed rule holds: image 4 alone, with seed 11 + 4, is the same image.
    alone = client.post("/generate", json={**body, "n": 1, "seed": 15})
    assert np.array_equal(np.load(io.BytesIO(alone.content))[0], images[4])
    png = client.get(f"/generate?label=3&n=4&seed=1&model={NAME}")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"


def test_dataset_serves_the_exported_ebgan(client: TestClient) -> None:
    body = {"per_label": 3, "labels": [0, 9], "seed": 5, "format": "npz", "model": NAME}
    response = client.post("/dataset", json=body)
    assert response.status_code == 200, response.text
    archive = np.load(io.BytesIO(response.content))
    assert archive["x"].dtype == np.uint8 and archive["x"].shape == (6, 28, 28)
    assert sorted(archive["y"].tolist()) == [0, 0, 0, 9, 9, 9]
    assert client.post("/dataset", json=body).content == response.content  # reproducible
