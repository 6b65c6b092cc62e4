"""/dataset: streamed npz, zip and WebDataset tar archives, their order and seeds, and stopping when the
client leaves."""

from __future__ import annotations

import csv
import io
import json
import tarfile
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient


def _generate(client: TestClient, **body: object) -> np.ndarray:
    response = client.post("/generate", json={"format": "npy", **body})
    assert response.status_code == 200, response.text
    return np.load(io.BytesIO(response.content))


def test_npz_has_per_label_rows_of_every_class_in_order(shared_client: TestClient) -> None:
    response = shared_client.post("/dataset", json={"per_label": 7, "seed": 100})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-images"] == "70" and response.headers["x-seed"] == "100"
    assert 'filename="digits-v1-seed100.npz"' in response.headers["content-disposition"]
    data = np.load(io.BytesIO(response.content))
    assert sorted(data.files) == ["x", "y"]
    x, y = data["x"], data["y"]
    assert x.dtype == np.uint8 and x.shape == (70, 28, 28)
    assert y.dtype == np.int64 and np.array_equal(y, np.repeat(np.arange(10), 7))
    assert np.bincount(y).tolist() == [7] * 10


def test_npz_rows_follow_the_seed_rule(shared_client: TestClient) -> None:
    # Image j overall is label labels[j // per_label] with seed + j.
    data = np.load(
        io.BytesIO(
            shared_client.post("/dataset", json={"per_label": 3, "labels": [4, "1"], "seed": 50}).content
        )
    )
    assert data["y"].tolist() == [4, 4, 4, 1, 1, 1]
    assert np.array_equal(data["x"][:3], _generate(shared_client, label=4, n=3, seed=50))
    assert np.array_equal(data["x"][3:], _generate(shared_client, label=1, n=3, seed=53))


def test_npz_spanning_many_batches_is_whole(models_dir: Path, open_client) -> None:
    with open_client(models_dir, dataset_batch=16) as client:
        content = client.post("/dataset", json={"per_label": 25, "labels": [0, 9], "seed": 0}).content
        x = np.load(io.BytesIO(content))["x"]
        assert x.shape == (50, 28, 28)
        assert np.array_equal(x[25:], _generate(client, label=9, n=25, seed=25))


def test_same_request_gives_the_same_archive_bytes(shared_client: TestClient) -> None:
    body = {"per_label": 2, "labels": [3], "seed": 9, "format": "zip"}
    assert (
        shared_client.post("/dataset", json=body).content == shared_client.post("/dataset", json=body).content
    )


def test_zip_has_a_folder_per_class_and_a_manifest(
    shared_client: TestClient, fashion_classes: list[str]
) -> None:
    body = {"per_label": 12, "labels": ["T-shirt/top", 9], "seed": 5, "format": "zip", "model": "fashion"}
    response = shared_client.post("/dataset", json=body)
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    names = archive.namelist()
    assert names[:2] == ["0_T-shirt_top/00.png", "0_T-shirt_top/01.png"]
    assert names[12:14] == ["9_Ankle_boot/00.png", "9_Ankle_boot/01.png"]
    assert names[-2:] == ["manifest.json", "manifest.csv"] and len(names) == 26

    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["model"] == "fashion" and manifest["version"] == 2
    assert manifest["labels"] == [0, 9] and manifest["per_label"] == 12 and manifest["count"] == 24
    assert manifest["class_names"] == fashion_classes

    rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert [r["path"] for r in rows] == names[:24]
    assert rows[13] == {"path": "9_Ankle_boot/01.png", "label": "9", "class_name": "Ankle boot", "seed": "18"}

    from PIL import Image

    expected = _generate(shared_client, label=9, n=1, seed=18, model="fashion")[0]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(archive.read("9_Ankle_boot/01.png")))), expected)


def test_tar_read_by_webdataset_equals_the_npz(shared_client: TestClient, tmp_path: Path) -> None:
    import webdataset as wds

    body = {"per_label": 6, "labels": ["Bag", 2], "seed": 40, "model": "fashion"}
    npz = np.load(io.BytesIO(shared_client.post("/dataset", json=body).content))
    response = shared_client.post("/dataset", json={**body, "format": "tar"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-tar"
    assert 'filename="fashion-v2-seed40.tar"' in response.headers["content-disposition"]
    shard = tmp_path / "fashion.tar"
    shard.write_bytes(response.content)

    samples = list(wds.WebDataset(str(shard), shardshuffle=False).decode("l8"))
    assert [s["__key__"] for s in samples] == [f"{j:02d}" for j in range(12)]
    assert np.array_equal(np.stack([s["png"] for s in samples]), npz["x"])
    assert [s["cls"] for s in samples] == npz["y"].tolist() == [8] * 6 + [2] * 6
    assert samples[7]["json"] == {
        "label": 2, "class_name": "Pullover", "seed": 47, "model": "fashion", "version": 2
    }  # fmt: skip
    # Only samples in the tar: a reader sees no stray entries, and the same request gives the same bytes.
    with tarfile.open(shard) as archive:
        names = archive.getnames()
    assert names[:3] == ["00.png", "00.cls", "00.json"] and len(names) == 36
    assert shared_client.post("/dataset", json={**body, "format": "tar"}).content == response.content


@pytest.mark.parametrize(
    "body,status,field",
    [
        ({"per_label": 0}, 422, "per_label"),
        ({"per_label": 10_001}, 422, "per_label"),
        ({"per_label": 10_000, "labels": list(range(10)) + [0]}, 422, "labels"),
        ({"per_label": 1, "labels": [1, "1"]}, 422, "labels"),
        ({"per_label": 1, "labels": []}, 422, "labels"),
        ({"per_label": 1, "labels": [3, "nope"]}, 422, "labels[1]"),
        ({"per_label": 1, "format": "rar"}, 422, "format"),
        ({"per_label": 1, "model": "nope"}, 404, "model"),
        ({"labels": [1]}, 422, "per_label"),
    ],
)
def test_bad_dataset_requests(shared_client: TestClient, body: dict, status: int, field: str) -> None:
    response = shared_client.post("/dataset", json=body)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field


def test_total_is_capped_by_max_dataset_images(models_dir: Path, open_client) -> None:
    with open_client(models_dir, max_dataset_images=50) as client:
        response = client.post("/dataset", json={"per_label": 6})
        assert response.status_code == 422
        assert "MAX_DATASET_IMAGES" in response.json()["detail"]
        assert client.post("/dataset", json={"per_label": 5}).status_code == 200


def test_client_leaving_mid_stream_stops_generation(models_dir: Path, open_client, metric) -> None:
    batch, total = 64, 64 * 200
    images = "cgan_images_generated_total"
    with open_client(models_dir, dataset_batch=batch) as client:
        before = metric(client, images, {"model": "digits"})
        with client.stream("POST", "/dataset", json={"per_label": total // 10, "seed": 0}) as response:
            assert response.status_code == 200
            next(response.iter_raw())  # the stream is running; now hang up
        time.sleep(0.3)  # long enough for dozens of batches, were any still being made
        made = metric(client, images, {"model": "digits"}) - before
        time.sleep(0.3)
        assert metric(client, images, {"model": "digits"}) - before == made
    # One batch was sent, at most a couple more were in flight when the response was cancelled.
    assert batch <= made <= 4 * batch < total


def test_memory_stays_flat_while_streaming_100k_images(models_dir: Path, open_client) -> None:
    total = 100_000
    with open_client(models_dir, dataset_batch=1024) as client:
        tracemalloc.start()
        try:
            received = 0
            with client.stream("POST", "/dataset", json={"per_label": total // 10, "seed": 0}) as response:
                assert response.status_code == 200
                for chunk in response.iter_raw():
                    received += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    pixels = total * 28 * 28
    assert received > pixels + total * 8  # x and y, plus headers
    # The whole x array would be 78 MB; a few batches in flight are a few MB.
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"
