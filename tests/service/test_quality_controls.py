"""Serve-time quality controls: ``truncation`` and judge-filtered generation (``min_confidence``).

The fake judge (cgan_testing/fakes.py ``build_judge``) gives the target class the probability pixel/255 of one
pixel and a decoy class the rest, so the test knows from the unfiltered images alone which candidates it
must accept, and a filter that read the largest probability instead of the requested class's would keep
them all.
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

import cgan_contract as contract
from cgan_contract import runner
from cgan_testing.fakes import LATENT_DIM, build_generator, build_judge, judge_section
from service import dataplane, filtering
from service.dataplane import ImageRequest

LABEL = 3
CONFIDENCE = 0.5


@pytest.fixture(scope="module")
def generator() -> bytes:
    return build_generator()


@pytest.fixture(scope="module")
def session(generator: bytes):
    return runner.open_session(generator, threads=1)


def unfiltered(session, seeds: np.ndarray, label: int = LABEL, truncation: float | None = None) -> np.ndarray:
    labels = np.full(len(seeds), label, dtype=np.int64)
    return runner.generate(session, labels, np.asarray(seeds, np.uint64), LATENT_DIM, truncation=truncation)


@pytest.fixture(scope="module")
def pixel(session) -> int:
    """A pixel whose value for LABEL passes CONFIDENCE about half the time: a judge keeping ~half."""
    images = unfiltered(session, contract.request_seeds(0, 400)).reshape(400, -1)
    passing = (images.astype(np.float32) / np.float32(255) >= CONFIDENCE).mean(axis=0)
    return int(np.argmin(np.abs(passing - 0.5)))


def accepts(images: np.ndarray, pixel: int, confidence: float = CONFIDENCE) -> np.ndarray:
    """What the fake judge accepts, worked out without it: pixel / 255 >= confidence, in float32."""
    return images.reshape(len(images), -1)[:, pixel].astype(np.float32) / np.float32(255) >= confidence


@pytest.fixture
def judged_dir(tmp_path: Path, publish, generator: bytes, pixel: int) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    publish(root, "digits", 1, onnx_bytes=generator, judge_bytes=build_judge(target=LABEL, pixel=pixel))
    return root


def test_filter_keeps_the_first_accepted_seeds_in_order_and_reports_the_rate(
    judged_dir: Path, open_client, session, pixel: int
) -> None:
    body = {"label": LABEL, "n": 16, "seed": 100, "format": "json", "min_confidence": CONFIDENCE}
    with open_client(judged_dir) as client:
        response = client.post("/generate", json=body)
        assert response.status_code == 200, response.text
        again = client.post("/generate", json={**body, "format": "png"})
        assert again.content == client.post("/generate", json={**body, "format": "png"}).content
    candidates = np.arange(100, 100 + 16 * filtering.MAX_DRAWS_PER_IMAGE, dtype=np.uint64)
    kept = np.flatnonzero(accepts(unfiltered(session, candidates), pixel))[:16]
    payload = response.json()
    assert payload["seeds"] == (100 + kept).tolist()
    # Each kept image is the unfiltered image of its seed: reproducible alone.
    np.testing.assert_array_equal(np.array(payload["images"]), unfiltered(session, candidates[kept])[..., 0])
    examined = int(kept[-1]) + 1
    assert 0.2 < 16 / examined < 0.8, "the fake judge keeps about half"
    assert response.headers["X-Candidates"] == str(examined)
    assert float(response.headers["X-Acceptance-Rate"]) == pytest.approx(16 / examined, rel=1e-5)


def test_min_confidence_zero_drops_only_the_images_the_judge_calls_another_class(
    judged_dir: Path, open_client, session, pixel: int
) -> None:
    # The fake judge's top class is the decoy whenever p < 0.5: those images are off-label, and only those go.
    body = {"label": LABEL, "n": 8, "seed": 5, "format": "json"}
    with open_client(judged_dir) as client:
        plain = client.post("/generate", json=body).json()
        filtered = client.post("/generate", json={**body, "min_confidence": 0.0})
    assert filtered.status_code == 200, filtered.text
    candidates = np.arange(5, 5 + 8 * filtering.MAX_DRAWS_PER_IMAGE, dtype=np.uint64)
    images = unfiltered(session, candidates)
    on_label = images.reshape(len(images), -1)[:, pixel].astype(np.float32) / np.float32(255) >= 0.5
    kept = np.flatnonzero(on_label)[:8]
    assert filtered.json()["seeds"] == (5 + kept).tolist() != plain["seeds"]
    assert float(filtered.headers["X-Acceptance-Rate"]) < 1


def test_the_filter_keeps_an_image_only_where_its_label_is_the_judges_top_class() -> None:
    probabilities = np.array(
        [[0.1, 0.5, 0.4], [0.3, 0.3, 0.4], [0.0, 0.9, 0.1], [0.45, 0.0, 0.55]], np.float32
    )
    assert filtering.accepts(probabilities, 1, 0.0).tolist() == [True, False, True, False]
    assert filtering.accepts(probabilities, 1, 0.6).tolist() == [False, False, True, False]
    # A label with 0.45 behind another class at 0.55 is off-label whatever the threshold below it.
    assert filtering.accepts(probabilities, 0, 0.4).tolist() == [False, False, False, False]


def test_the_bound_is_a_422_naming_min_confidence(tmp_path: Path, publish, open_client, generator) -> None:
    root = tmp_path / "models"
    root.mkdir()
    judge = build_judge(target=LABEL, pixel=None, confidence=0.6)  # never reaches 0.7
    publish(root, "digits", 1, onnx_bytes=generator, judge_bytes=judge)
    with open_client(root) as client:
        response = client.post("/generate", json={"label": LABEL, "n": 4, "min_confidence": 0.7})
        dataset = client.post("/dataset", json={"per_label": 3, "labels": [LABEL], "min_confidence": 0.7})
        ok = client.post("/generate", json={"label": LABEL, "n": 4, "min_confidence": 0.6})
    assert response.status_code == 422 and response.json()["field"] == "min_confidence"
    assert "only 0 of 4 images of label 3" in response.json()["detail"]
    assert f"within {4 * filtering.MAX_DRAWS_PER_IMAGE} candidates" in response.json()["detail"]
    assert dataset.status_code == 422 and dataset.json()["field"] == "min_confidence"
    assert ok.status_code == 200 and ok.headers["X-Acceptance-Rate"] == "1"


def test_a_model_without_a_judge_refuses_min_confidence(models_dir: Path, open_client) -> None:
    with open_client(models_dir) as client:
        for path, body in (("/generate", {"label": 1}), ("/dataset", {"per_label": 2})):
            response = client.post(path, json={**body, "min_confidence": 0.9})
            assert response.status_code == 422, response.text
            assert response.json()["field"] == "min_confidence"
            assert "has no judge" in response.json()["detail"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("truncation", 0.4), ("truncation", 6.0), ("min_confidence", 1.5), ("min_confidence", -0.1)],
)
def test_out_of_range_controls_are_a_422_naming_the_field(
    judged_dir: Path, open_client, field: str, value: float
) -> None:
    with open_client(judged_dir) as client:
        for path, body in (("/generate", {"label": LABEL}), ("/dataset", {"per_label": 2})):
            response = client.post(path, json={**body, field: value})
            assert response.status_code == 422 and response.json()["field"] == field, response.text
        query = client.get("/generate", params={"label": LABEL, field: value})
        assert query.status_code == 422 and query.json()["field"] == field


def test_the_data_plane_refuses_bad_controls_itself(judged_dir: Path, open_client, runtime) -> None:
    # Callers of the data plane (bench, bulk) bypass the HTTP schema: the same rule holds there.
    with open_client(judged_dir) as client:
        for kwargs, field in (
            ({"truncation": 9.0}, "truncation"),
            ({"min_confidence": 2.0}, "min_confidence"),
        ):
            with pytest.raises(dataplane.RequestError) as caught:
                dataplane.images_now(runtime(client), ImageRequest(label=LABEL, n=2, **kwargs))
            assert caught.value.field == field


def test_truncation_on_generate_follows_the_contract_rule(judged_dir: Path, open_client, session) -> None:
    body = {"label": 2, "n": 12, "seed": 40, "format": "npy", "truncation": 0.7}
    with open_client(judged_dir) as client:
        images = np.load(io.BytesIO(client.post("/generate", json=body).content))
        alone = np.load(io.BytesIO(client.post("/generate", json={**body, "seed": 45, "n": 1}).content))
        plain = np.load(io.BytesIO(client.post("/generate", json={**body, "truncation": None}).content))
        query = client.get("/generate", params={"label": 2, "n": 12, "seed": 40, "truncation": 0.7})
        png = client.post("/generate", json={**body, "format": "png"})
    np.testing.assert_array_equal(images, unfiltered(session, contract.request_seeds(40, 12), 2, 0.7)[..., 0])
    np.testing.assert_array_equal(images[5], alone[0])
    assert not np.array_equal(images, plain)
    assert query.status_code == 200 and query.content == png.content


def test_batched_jobs_keep_their_own_controls(judged_dir: Path, open_client, runtime) -> None:
    with open_client(judged_dir) as client:
        rt = runtime(client)
        requests = [
            ImageRequest(label=1, n=3, seed=9, format="npy", truncation=t) for t in (None, 0.6, 2.0, None)
        ]
        requests.append(ImageRequest(label=LABEL, n=3, seed=9, format="json", min_confidence=CONFIDENCE))
        together = dataplane.run_jobs([dataplane.prepare(rt, r) for r in requests])
        alone = [dataplane.images_now(rt, r).body for r in requests]
    assert together == alone
    assert together[0] == together[3] and len({together[0], together[1], together[2]}) == 3
    assert json.loads(together[4])["seeds"] != [9, 10, 11], "the fake judge keeps about half"


def test_filtered_dataset_picks_seeds_per_label_and_records_them(
    judged_dir: Path, open_client, session, pixel: int
) -> None:
    body = {
        "per_label": 6,
        "labels": [LABEL],
        "seed": 200,
        "min_confidence": CONFIDENCE,
        "truncation": 2.0,
        "order": "by_class",  # one label in the class order: the /generate candidates, in theirs
    }
    with open_client(judged_dir) as client:
        npz = client.post("/dataset", json=body)
        generated = client.post(
            "/generate",
            json={
                "label": LABEL,
                "n": 6,
                "seed": 200,
                "format": "json",
                **{k: body[k] for k in ("min_confidence", "truncation")},
            },
        )
        zipped = client.post("/dataset", json={**body, "format": "zip"})
        tarred = client.post("/dataset", json={**body, "format": "tar"})
    assert npz.status_code == 200, npz.text
    data = np.load(io.BytesIO(npz.content))
    # One label: the same candidates as /generate, so the same images and seeds.
    assert data["seeds"].tolist() == generated.json()["seeds"]
    np.testing.assert_array_equal(data["x"], np.array(generated.json()["images"]))
    np.testing.assert_array_equal(data["x"], unfiltered(session, data["seeds"], LABEL, 2.0)[..., 0])
    assert accepts(data["x"], pixel).all()
    rate = float(npz.headers["X-Acceptance-Rate"])
    assert rate == pytest.approx(float(generated.headers["X-Acceptance-Rate"]), rel=1e-5)
    assert data["acceptance_rate"][0] == pytest.approx(rate, rel=1e-5)
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        rows = archive.read("manifest.csv").decode().splitlines()[1:]
    assert manifest["min_confidence"] == CONFIDENCE and manifest["truncation"] == 2.0
    assert manifest["acceptance_rate"] == pytest.approx(rate, rel=1e-5)
    assert manifest["candidates_judged"] == round(6 / rate)
    assert [int(row.split(",")[-2]) for row in rows] == data["seeds"].tolist()
    with tarfile.open(fileobj=io.BytesIO(tarred.content)) as shard:
        metas = [json.load(shard.extractfile(m)) for m in shard.getmembers() if m.name.endswith(".json")]
    assert [m["seed"] for m in metas] == data["seeds"].tolist()
    assert {m["truncation"] for m in metas} == {2.0}


def test_filtered_dataset_labels_draw_disjoint_seeds(
    tmp_path: Path, publish, open_client, generator, session
) -> None:
    # A judge that keeps everything for class 0 and a pixel-rule one would differ per label; here the
    # constant judge keeps all of LABEL, so a two-label request shows the seed layout plainly.
    root = tmp_path / "models"
    root.mkdir()
    publish(root, "digits", 1, onnx_bytes=generator, judge_bytes=build_judge(target=LABEL, pixel=None))
    with open_client(root) as client:
        kept = client.post(
            "/dataset", json={"per_label": 4, "labels": [LABEL], "seed": 0, "min_confidence": 1.0}
        )
        refused = client.post("/dataset", json={"per_label": 4, "labels": [LABEL, 5], "min_confidence": 0.5})
    assert sorted(np.load(io.BytesIO(kept.content))["seeds"].tolist()) == [0, 1, 2, 3]
    assert refused.status_code == 422 and "of label 5" in refused.json()["detail"]


def test_filtered_requests_keep_their_seeds_within_max_seed(judged_dir: Path, open_client) -> None:
    last = contract.MAX_SEED - 4 + 1
    with open_client(judged_dir) as client:
        assert client.post("/generate", json={"label": LABEL, "n": 4, "seed": last}).status_code == 200
        response = client.post(
            "/generate", json={"label": LABEL, "n": 4, "seed": last, "min_confidence": 0.1}
        )
    assert response.status_code == 422 and response.json()["field"] == "seed"


def test_the_bundled_model_filtered_at_099_gives_only_images_its_judge_is_sure_of(
    tmp_path: Path, open_client
) -> None:
    from service.config import BUNDLED_DIR

    with open_client(tmp_path, bundled_models=True) as client:
        for label in (4, 9):
            body = {"label": label, "n": 32, "seed": 7, "format": "npy", "min_confidence": 0.99}
            response = client.post("/generate", json=body)
            assert response.status_code == 200, response.text
            # The default version's own judge (its INT8 twin's, under PRECISION=auto).
            version = BUNDLED_DIR / "mnist-5k-cgan-conv" / response.headers["x-model-version"]
            judge = runner.open_session((version / contract.JUDGE_FILE).read_bytes(), threads=1)
            images = np.load(io.BytesIO(response.content))[..., None]
            probabilities = runner.classify(judge, images)
            assert (probabilities.argmax(axis=1) == label).all()
            assert (probabilities[:, label] >= np.float32(0.99)).all()
            assert 0.5 < float(response.headers["X-Acceptance-Rate"]) <= 1.0


# --- the registry and the judge ---------------------------------------------------------------------------


def test_a_judge_whose_hash_mismatches_is_refused(tmp_path: Path, publish, open_client, generator) -> None:
    root = tmp_path / "models"
    root.mkdir()
    judge = build_judge(target=LABEL)
    other = judge_section(build_judge(target=LABEL + 1))
    publish(root, "digits", 1, onnx_bytes=generator, judge_bytes=judge, judge=other)
    with open_client(root) as client:
        ready = client.get("/readyz").json()
    assert not ready["ready"] and ready["refused"] == {"digits/1": "sha256"}


@pytest.mark.parametrize(
    ("judge", "reason"),
    [
        (None, "incomplete"),  # declared, not there
        ("generator", "signature"),  # a generator is not a judge
        ("twelve", "signature"),  # the wrong class count
    ],
)
def test_a_judge_that_cannot_back_its_card_is_refused(
    tmp_path: Path, publish, open_client, generator, judge: str | None, reason: str
) -> None:
    root = tmp_path / "models"
    root.mkdir()
    data = {"generator": generator, "twelve": build_judge(num_classes=12), None: build_judge()}[judge]
    version = publish(root, "digits", 1, onnx_bytes=generator, judge_bytes=data, judge=judge_section(data))
    if judge is None:
        (version / contract.JUDGE_FILE).unlink()
    with open_client(root) as client:
        assert client.get("/readyz").json()["refused"] == {"digits/1": reason}


def test_a_card_rewritten_with_a_judge_brings_it_in(models_dir: Path, open_client, runtime) -> None:
    # cgan-train evaluate writes judge.onnx, then the card that declares it, into a served version.
    with open_client(models_dir) as client:
        assert client.post("/generate", json={"label": 1, "min_confidence": 0.5}).status_code == 422
        version = models_dir / "digits" / "1"
        judge = build_judge(target=1, pixel=None, confidence=0.9)
        (version / contract.JUDGE_FILE).write_bytes(judge)
        card = json.loads((version / contract.CARD_FILE).read_text())
        card["judge"] = judge_section(judge).model_dump(mode="json")
        (version / contract.CARD_FILE).write_text(json.dumps(card))
        runtime(client).registry.scan()
        response = client.post("/generate", json={"label": 1, "n": 2, "min_confidence": 0.5})
        assert response.status_code == 200 and response.headers["X-Acceptance-Rate"] == "1"
        assert client.get("/v1/models/digits").json()["card"]["judge"]["sha256"] == card["judge"]["sha256"]


def test_a_rewritten_card_with_a_broken_judge_keeps_the_old_card(
    models_dir: Path, open_client, runtime
) -> None:
    with open_client(models_dir) as client:
        version = models_dir / "digits" / "1"
        judge = build_judge(target=1)
        (version / contract.JUDGE_FILE).write_bytes(judge + b"tampered")
        card = json.loads((version / contract.CARD_FILE).read_text())
        card["judge"] = judge_section(judge).model_dump(mode="json")
        (version / contract.CARD_FILE).write_text(json.dumps(card))
        runtime(client).registry.scan()
        assert client.get("/v1/models/digits").json()["card"]["judge"] is None  # the old card serves on
        response = client.post("/generate", json={"label": 1, "min_confidence": 0.5})
        assert response.status_code == 422 and "has no judge" in response.json()["detail"]
        assert client.post("/generate", json={"label": 1}).status_code == 200


def test_the_judge_runs_in_pieces_of_run_max_images() -> None:
    # onnxruntime keeps the arena its largest run needed: a filtered pick's 1,024 candidates judged at
    # once held ~355 MiB a worker for good (bench/drills/memory_drill.py).
    class Counting:
        def __init__(self) -> None:
            self.sizes: list[int] = []

        def run(self, outputs, feed):
            (images,) = feed.values()
            self.sizes.append(len(images))
            return [np.full((len(images), 10), len(self.sizes), np.float32)]

    session = Counting()
    probabilities = runner.classify(session, np.zeros((200, 28, 28, 1), np.uint8), 64)
    assert session.sizes == [64, 64, 64, 8] and probabilities.shape == (200, 10)
    assert probabilities[:, 0].tolist() == [1] * 64 + [2] * 64 + [3] * 64 + [4] * 8  # in order
