"""/generate: formats, grid size, the per-image seed rule, determinism and class names."""

from __future__ import annotations

import io
import json

import numpy as np
import orjson
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import cgan_contract as contract
from service import imaging
from service.dataplane import ImageRequest, images_now


def _npy(client: TestClient, **body: object) -> np.ndarray:
    response = client.post("/generate", json={"format": "npy", **body})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-npy"
    return np.load(io.BytesIO(response.content))


def test_png_grid_has_the_documented_size(shared_client: TestClient) -> None:
    response = shared_client.post("/generate", json={"label": 9, "n": 16, "seed": 3})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == imaging.grid_size(16, (28, 28)) == (122, 122)
    assert image.mode == "L"


def test_png_grid_holds_the_npy_images(shared_client: TestClient) -> None:
    body = {"label": 4, "n": 7, "seed": 11, "nrow": 3, "pad": 1}
    grid = np.asarray(Image.open(io.BytesIO(shared_client.post("/generate", json=body).content)))
    images = _npy(shared_client, **body)
    assert grid.shape == (3 * 28 + 4, 3 * 28 + 4)
    for i, image in enumerate(images):
        top, left = 1 + (i // 3) * 29, 1 + (i % 3) * 29
        assert np.array_equal(grid[top : top + 28, left : left + 28], image)


def test_npy_is_uint8_n_by_28_by_28(shared_client: TestClient) -> None:
    images = _npy(shared_client, label=2, n=5, seed=0)
    assert images.dtype == np.uint8 and images.shape == (5, 28, 28)
    assert images.max() > images.min()  # a blank image would hide a broken pipeline


def test_json_matches_npy(shared_client: TestClient) -> None:
    response = shared_client.post("/generate", json={"label": 3, "n": 4, "seed": 99, "format": "json"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = orjson.loads(response.content)
    assert body["model"] == "digits" and body["version"] == 1
    assert body["labels"] == [3] * 4 and body["seeds"] == [99, 100, 101, 102] and body["shape"] == [4, 28, 28]
    assert np.array_equal(
        np.array(body["images"], dtype=np.uint8), _npy(shared_client, label=3, n=4, seed=99)
    )


def test_the_seeds_a_response_reports_are_the_ones_its_images_came_from(
    shared_client: TestClient, generator_bytes: bytes
) -> None:
    # Computed here from the contract's noise, not through the service's seed arithmetic: a drift between
    # the seeds listed, the X-Seed rule (seed + i) and the noise the images were made from fails.
    from cgan_contract.runner import open_session, run

    response = shared_client.post("/generate", json={"label": 6, "n": 5, "seed": 3000, "format": "json"})
    body = orjson.loads(response.content)
    assert response.headers["x-seed"] == "3000" and body["seeds"] == [3000, 3001, 3002, 3003, 3004]
    z = contract.noise_for_seeds(np.array(body["seeds"], dtype=np.uint64), 8)
    made = run(open_session(generator_bytes), np.full(5, 6, dtype=np.int64), z)[..., 0]
    assert np.array_equal(np.array(body["images"], dtype=np.uint8), made)


def test_headers_name_model_version_and_seed(shared_client: TestClient) -> None:
    response = shared_client.post("/generate", json={"label": "5", "n": 2, "seed": 1234})
    assert response.headers["x-model"] == "digits"
    assert response.headers["x-model-version"] == "1"
    assert response.headers["x-seed"] == "1234"
    assert response.headers["x-label"] == "5"


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, contract.MAX_SEED - 64), n=st.integers(1, 24), data=st.data())
def test_image_k_of_a_request_is_the_request_with_seed_plus_k(
    shared_client: TestClient, seed: int, n: int, data: st.DataObject
) -> None:
    k = data.draw(st.integers(0, n - 1))
    batch = _npy(shared_client, label=7, n=n, seed=seed)
    single = _npy(shared_client, label=7, n=1, seed=seed + k)
    assert np.array_equal(batch[k], single[0])


def test_same_seed_same_bytes_and_different_seeds_differ(shared_client: TestClient) -> None:
    first = shared_client.post("/generate", json={"label": 1, "n": 9, "seed": 5}).content
    again = shared_client.post("/generate", json={"label": 1, "n": 9, "seed": 5}).content
    other = shared_client.post("/generate", json={"label": 1, "n": 9, "seed": 6}).content
    assert first == again
    assert first != other


def test_random_seed_is_echoed_and_reproduces(shared_client: TestClient) -> None:
    response = shared_client.post("/generate", json={"label": 0, "n": 3, "format": "npy"})
    seed = int(response.headers["x-seed"])
    assert 0 <= seed <= contract.MAX_SEED - 2
    assert np.array_equal(np.load(io.BytesIO(response.content)), _npy(shared_client, label=0, n=3, seed=seed))


def test_class_names_and_indices_are_the_same_label(
    shared_client: TestClient, fashion_classes: list[str]
) -> None:
    by_name = _npy(shared_client, label="Sneaker", n=3, seed=8, model="fashion")
    by_index = _npy(shared_client, label=fashion_classes.index("Sneaker"), n=3, seed=8, model="fashion")
    by_digits = _npy(shared_client, label="7", n=3, seed=8, model="fashion")
    assert np.array_equal(by_name, by_index) and np.array_equal(by_name, by_digits)
    assert not np.array_equal(by_name, _npy(shared_client, label="Bag", n=3, seed=8, model="fashion"))


def test_labels_change_the_images(shared_client: TestClient) -> None:
    assert not np.array_equal(
        _npy(shared_client, label=1, n=2, seed=0), _npy(shared_client, label=2, n=2, seed=0)
    )


def test_get_returns_the_same_png_for_img_src(shared_client: TestClient) -> None:
    query = {"label": "9", "n": 16, "seed": 21, "nrow": 8}
    response = shared_client.get("/generate", params=query)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content == shared_client.post("/generate", json={**query, "label": 9}).content
    assert Image.open(io.BytesIO(response.content)).size == imaging.grid_size(16, (28, 28), nrow=8)
    assert "cache-control" not in response.headers
    assert shared_client.get("/generate", params={"label": "3"}).headers["cache-control"] == "no-store"


def test_default_model_and_named_model(shared_client: TestClient) -> None:
    assert shared_client.post("/generate", json={"label": 0, "n": 1}).headers["x-model"] == "digits"
    fashion = shared_client.post("/generate", json={"label": 0, "n": 1, "model": "fashion"})
    assert (fashion.headers["x-model"], fashion.headers["x-model-version"]) == ("fashion", "2")


def test_n_up_to_max_n(shared_client: TestClient) -> None:
    images = _npy(shared_client, label=0, n=1024, seed=0)
    assert images.shape == (1024, 28, 28)


def test_unbatched_render_gives_the_served_bytes(shared_client: TestClient, runtime) -> None:
    for fmt in ("png", "npy", "json"):
        served = shared_client.post(
            "/generate", json={"label": 6, "n": 5, "seed": 77, "format": fmt, "nrow": 2}
        )
        request = ImageRequest(label=6, n=5, seed=77, model="digits", format=fmt, nrow=2, pad=2)
        assert images_now(runtime(shared_client), request).body == served.content, fmt


def test_unbatched_tensors_give_the_served_bytes(shared_client: TestClient, runtime) -> None:
    """tensors_now (the benchmarks' in-process reference for the protocol) answers what /v2 infer serves."""
    from service.dataplane import tensors_now
    from service.http import oip_codec

    for binary in (False, True):
        body = {
            "inputs": [{"name": "label", "datatype": "INT64", "shape": [3], "data": [1, 2, 3]}],
            "parameters": {"seed": 5, "binary_data_output": binary},
        }
        served = shared_client.post("/v2/models/digits/infer", json=body)
        assert served.status_code == 200, served.text
        decoded = oip_codec.decode(json.dumps(body).encode(), None)
        alone = tensors_now(runtime(shared_client), decoded.to_request("digits", None))
        assert alone.body == served.content, binary
