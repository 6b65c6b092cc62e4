"""A new output format is one entry in :mod:`service.formats` plus its encoder. Here two toy formats are
registered by this test alone (no other file edited): the request schemas accept them, the OpenAPI document
lists them, and /generate and /dataset serve them, with their media types, from the same images as the
built-in formats."""

from __future__ import annotations

import io
from collections.abc import Generator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service import formats
from service.archives import DatasetPlan


def pgm(made: formats.Generated) -> bytes:
    """A binary Netpbm greymap (P5) of the images side by side."""
    images = made.images[..., 0]
    n, h, w = images.shape
    return b"P5 %d %d 255\n" % (n * w, h) + images.transpose(1, 0, 2).reshape(h, n * w).tobytes()


def raw(plan: DatasetPlan, compress_level: int) -> Generator[bytes, None, None]:
    """Every image's pixels, in the order handed out, one chunk per batch."""
    for batch in plan.batches():
        yield plan.images(batch).tobytes()


@pytest.fixture
def toy_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(formats.IMAGE_FORMATS, "pgm", formats.ImageFormat("image/x-portable-graymap", pgm))
    monkeypatch.setitem(formats.ARCHIVE_FORMATS, "raw", formats.ArchiveFormat("application/x-raw", raw))


def _enum(client: TestClient, schema: str) -> list[str]:
    components = client.get("/openapi.json").json()["components"]["schemas"]
    return components[schema]["properties"]["format"]["enum"]


def _served(client: TestClient, path: str, body: dict, toy: str, builtin: str):
    """The response in the toy format, the same request's built-in .npy/.npz (loaded), the OpenAPI enum."""
    response = client.post(path, json={**body, "format": toy})
    assert response.status_code == 200, response.text
    reference = np.load(io.BytesIO(client.post(path, json={**body, "format": builtin}).content))
    return response, reference, _enum(client, "GenerateRequest" if path == "/generate" else "DatasetRequest")


def test_a_new_image_format_is_one_entry(toy_formats: None, models_dir: Path, open_client) -> None:
    with open_client(models_dir) as client:
        response, npy, listed = _served(client, "/generate", {"label": 3, "n": 4, "seed": 7}, "pgm", "npy")
    assert listed == ["png", "npy", "json", "pgm"]
    assert response.headers["content-type"] == "image/x-portable-graymap"
    assert response.headers["x-seed"] == "7" and response.headers["x-label"] == "3"
    header, pixels = response.content.split(b"\n", 1)
    assert header == b"P5 112 28 255"
    assert pixels == np.concatenate(list(npy), axis=1).tobytes()


def test_a_new_archive_format_is_one_entry(toy_formats: None, models_dir: Path, open_client) -> None:
    with open_client(models_dir) as client:
        response, npz, listed = _served(
            client, "/dataset", {"per_label": 3, "labels": [2, 5], "seed": 4}, "raw", "npz"
        )
    assert listed == ["npz", "zip", "tar", "raw"]
    assert response.headers["content-type"] == "application/x-raw"
    assert response.headers["content-disposition"].endswith('-seed4.raw"')
    assert response.content == npz["x"].tobytes()


def test_formats_not_registered_are_refused(shared_client: TestClient) -> None:
    refused = shared_client.post("/generate", json={"label": 3, "format": "pgm"})
    assert refused.status_code == 422
    assert refused.json() == {"detail": "format: Input should be 'png', 'npy' or 'json'", "field": "format"}
    refused = shared_client.post("/dataset", json={"per_label": 1, "format": ["npz"]})
    assert refused.json() == {"detail": "format: Input should be 'npz', 'zip' or 'tar'", "field": "format"}
    assert _enum(shared_client, "GenerateRequest") == list(formats.IMAGE_FORMATS) == ["png", "npy", "json"]
