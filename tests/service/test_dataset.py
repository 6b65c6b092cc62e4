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
    body = {"per_label": 7, "seed": 100, "order": "by_class"}
    response = shared_client.post("/dataset", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-images"] == "70" and response.headers["x-seed"] == "100"
    assert response.headers["x-order"] == "by_class"
    assert 'filename="digits-v1-seed100.npz"' in response.headers["content-disposition"]
    data = np.load(io.BytesIO(response.content))
    assert data.files == ["order", "y", "seeds", "x"]  # labels and seeds before the rows
    x, y = data["x"], data["y"]
    assert x.dtype == np.uint8 and x.shape == (70, 28, 28)
    assert y.dtype == np.int64 and np.array_equal(y, np.repeat(np.arange(10), 7))
    assert data["seeds"].tolist() == list(range(100, 170)) and str(data["order"]) == "by_class"


def test_the_default_order_mixes_classes_in_every_window(shared_client: TestClient) -> None:
    response = shared_client.post("/dataset", json={"per_label": 30, "seed": 3})
    assert response.status_code == 200 and response.headers["x-order"] == "shuffled"
    data = np.load(io.BytesIO(response.content))
    y, seeds = data["y"], data["seeds"]
    assert str(data["order"]) == "shuffled"
    for start in range(0, 300, 10):  # every round of ten positions holds each label once
        assert sorted(y[start : start + 10].tolist()) == list(range(10))
    for w in (7, 32, 64):  # and so does any window, within one
        counts = [np.bincount(y[i : i + w], minlength=10) for i in range(300 - w + 1)]
        assert min(c.min() for c in counts) >= w // 10 and max(c.max() for c in counts) <= -(-w // 10)
    # The same (label, seed) pairs as the class order: image j has label j // 30 and seed 3 + j.
    assert sorted(seeds.tolist()) == list(range(3, 303))
    assert np.array_equal(y, (seeds - 3) // 30)
    assert not np.array_equal(np.sort(seeds[:30]), np.arange(3, 33)), "within a label, seeds are scrambled"


def test_both_orders_hold_the_same_images(shared_client: TestClient) -> None:
    def get(order: str) -> dict[str, np.ndarray]:
        body = {"per_label": 9, "labels": [4, "1", 7], "seed": 50, "order": order}
        data = np.load(io.BytesIO(shared_client.post("/dataset", json=body).content))
        return {k: data[k] for k in ("x", "y", "seeds")}

    by_class, shuffled = get("by_class"), get("shuffled")
    assert not np.array_equal(by_class["y"], shuffled["y"])
    at = np.argsort(shuffled["seeds"])
    for key in ("x", "y", "seeds"):
        assert np.array_equal(by_class[key], shuffled[key][at]), key


def test_npz_rows_follow_the_seed_rule(shared_client: TestClient) -> None:
    # Whatever the order, the row at each position is its label's image of its own seed.
    body = {"per_label": 3, "labels": [4, "1"], "seed": 50}
    data = np.load(io.BytesIO(shared_client.post("/dataset", json=body).content))
    assert sorted(data["y"].tolist()) == [1, 1, 1, 4, 4, 4]
    for row, label, seed in zip(data["x"], data["y"], data["seeds"], strict=True):
        assert np.array_equal(row, _generate(shared_client, label=int(label), n=1, seed=int(seed))[0])
    by_class = np.load(io.BytesIO(shared_client.post("/dataset", json={**body, "order": "by_class"}).content))
    assert by_class["y"].tolist() == [4, 4, 4, 1, 1, 1]
    assert np.array_equal(by_class["x"][:3], _generate(shared_client, label=4, n=3, seed=50))
    assert np.array_equal(by_class["x"][3:], _generate(shared_client, label=1, n=3, seed=53))


def test_npz_spanning_many_batches_is_whole(models_dir: Path, open_client) -> None:
    with open_client(models_dir, dataset_batch=16) as client:
        body = {"per_label": 25, "labels": [0, 9], "seed": 0, "order": "by_class"}
        x = np.load(io.BytesIO(client.post("/dataset", json=body).content))["x"]
        assert x.shape == (50, 28, 28)
        assert np.array_equal(x[25:], _generate(client, label=9, n=25, seed=25))
        mixed = np.load(io.BytesIO(client.post("/dataset", json={**body, "order": "shuffled"}).content))
        assert np.array_equal(mixed["x"], x[mixed["seeds"]]), "batch edges change nothing"


def test_runs_of_the_order_put_together_are_the_whole_set(shared_client: TestClient) -> None:
    body = {"per_label": 5, "seed": 11}
    whole = np.load(io.BytesIO(shared_client.post("/dataset", json=body).content))
    parts = []
    for start, stop in ((0, 17), (17, 18), (18, 50)):
        response = shared_client.post("/dataset", json={**body, "start": start, "stop": stop})
        assert response.status_code == 200 and response.headers["x-images"] == str(stop - start)
        assert f'seed11-{start}-{stop}.npz"' in response.headers["content-disposition"]
        parts.append(np.load(io.BytesIO(response.content)))
    for key in ("x", "y", "seeds"):
        assert np.array_equal(np.concatenate([part[key] for part in parts]), whole[key]), key


def test_same_request_gives_the_same_archive_bytes(shared_client: TestClient) -> None:
    body = {"per_label": 2, "labels": [3, 1], "seed": 9, "format": "zip"}
    assert (
        shared_client.post("/dataset", json=body).content == shared_client.post("/dataset", json=body).content
    )


def test_zip_has_a_folder_per_class_name_and_a_manifest(
    shared_client: TestClient, fashion_classes: list[str]
) -> None:
    body = {"per_label": 12, "labels": ["T-shirt/top", 9], "seed": 5, "format": "zip", "model": "fashion"}
    response = shared_client.post("/dataset", json=body)
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    names = archive.namelist()
    assert names[-2:] == ["manifest.json", "manifest.csv"] and len(names) == 26
    images = names[:24]
    by_class = [f"T-shirt_top/{k:02d}.png" for k in range(12)] + [
        f"Ankle boot/{k:02d}.png" for k in range(12)
    ]
    assert sorted(images) == sorted(by_class) and images != by_class  # mixed, with paths kept per image

    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["model"] == "fashion" and manifest["version"] == 2
    assert manifest["labels"] == [0, 9] and manifest["per_label"] == 12 and manifest["count"] == 24
    assert manifest["class_names"] == fashion_classes and manifest["order"] == "shuffled"
    assert manifest["folders"] == ["T-shirt_top", "Ankle boot"]

    rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert [r["path"] for r in rows] == images
    row = next(r for r in rows if r["path"] == "Ankle boot/01.png")
    assert row == {
        "path": "Ankle boot/01.png",
        "label": "9",
        "class_name": "Ankle boot",
        "seed": "18",
        "index": "13",
    }

    from PIL import Image

    expected = _generate(shared_client, label=9, n=1, seed=18, model="fashion")[0]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(archive.read("Ankle boot/01.png")))), expected)
    in_order = shared_client.post("/dataset", json={**body, "order": "by_class"})
    assert zipfile.ZipFile(io.BytesIO(in_order.content)).namelist()[:24] == by_class


def test_folders_fall_back_to_index_and_name_when_names_collide(shared_client: TestClient) -> None:
    from service.archives import folders

    assert folders((0, 1), ["a/b", "a?b"]) == {0: "0_a_b", 1: "1_a_b"}
    assert folders((0, 1), ["...", "x"]) == {0: "0_class", 1: "1_x"}
    assert folders((3,), ["T-shirt/top", "", "", "Sneaker"]) == {3: "Sneaker"}


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
    assert [s["__key__"] for s in samples] == [f"{p:02d}" for p in range(12)]
    assert np.array_equal(np.stack([s["png"] for s in samples]), npz["x"])
    assert [s["cls"] for s in samples] == npz["y"].tolist()
    assert sorted(npz["y"].tolist()) == [2] * 6 + [8] * 6
    assert [s["json"]["seed"] for s in samples] == npz["seeds"].tolist()
    p = npz["seeds"].tolist().index(47)
    assert samples[p]["json"] == {
        "label": 2, "class_name": "Pullover", "seed": 47, "index": 7, "model": "fashion", "version": 2
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
        ({"per_label": 1, "order": "random"}, 422, "order"),
        ({"per_label": 1, "order": None}, 422, "order"),
        ({"per_label": 1, "start": -1}, 422, "start"),
        ({"per_label": 1, "start": 10}, 422, "start"),
        ({"per_label": 1, "start": "0"}, 422, "start"),
        ({"per_label": 1, "stop": 0}, 422, "stop"),
        ({"per_label": 1, "stop": 11}, 422, "stop"),
        ({"per_label": 1, "start": 5, "stop": 5}, 422, "stop"),
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
