"""The service on an InfoGAN the trainer really exported (root fixture ``exported_infogan_dir``): its card
lists the codes, and ``/generate`` and ``/dataset`` serve it with each image's codes from its seed."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import cgan_contract as contract
from cgan_contract import runner


@pytest.fixture(scope="module")
def exported(request: pytest.FixtureRequest) -> Path:
    try:
        return Path(request.getfixturevalue("exported_infogan_dir"))
    except pytest.FixtureLookupError:
        pytest.skip("trainer fixture not available")


@pytest.fixture(scope="module")
def client(exported: Path, make_app) -> Iterator[TestClient]:
    with TestClient(make_app(exported)) as test_client:
        assert test_client.get("/readyz").status_code == 200, test_client.get("/readyz").text
        yield test_client


def _expected(exported: Path, labels: list[int], seed: int) -> np.ndarray:
    """What the exported graph makes under the contract's seed rule for noise and codes."""
    version = exported / "tiny-info" / "1"
    card = contract.read_card(version)
    session = runner.open_session(version / contract.MODEL_FILE)
    seeds = contract.request_seeds(seed, len(labels))
    return runner.generate(session, labels, seeds, card.latent_dim, code_ranges=card.code_ranges)[..., 0]


def test_card_in_v1_models_lists_the_codes(client: TestClient) -> None:
    (model,) = client.get("/v1/models").json()["models"]
    card = model["card"]
    assert card["variant"] == "infogan"
    assert [c["name"] for c in card["codes"]] == ["c0", "c1"]
    assert [i["name"] for i in card["inputs"]] == ["z", "label", "codes"]


def test_generate_serves_the_seed_rule_codes(client: TestClient, exported: Path) -> None:
    response = client.post("/generate", json={"label": 2, "n": 6, "seed": 11, "format": "npy"})
    assert response.status_code == 200, response.text
    images = np.load(io.BytesIO(response.content))
    assert images.shape == (6, 28, 28) and images.dtype == np.uint8
    assert np.array_equal(images, _expected(exported, [2] * 6, 11))
    png = client.post("/generate", json={"label": 2, "n": 4, "seed": 11})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"


def test_dataset_serves_every_class_with_the_seed_rule_codes(client: TestClient, exported: Path) -> None:
    body = {"per_label": 3, "labels": [0, 9], "seed": 40, "order": "by_class"}
    response = client.post("/dataset", json=body)
    assert response.status_code == 200, response.text
    data = np.load(io.BytesIO(response.content))
    assert data["y"].tolist() == [0, 0, 0, 9, 9, 9]
    assert np.array_equal(data["x"], _expected(exported, [0, 0, 0, 9, 9, 9], 40))
