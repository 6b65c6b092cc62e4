"""Style codes through the service: the card lists them, /generate and /dataset take them (or follow the
seed rule), /generate sweeps one in a traversal grid, the Open Inference Protocol takes a ``codes`` tensor,
and every way of getting them wrong is a 422 naming the field.

The model is :func:`cgan_testing.fakes.build_generator` with two codes (``slant`` in [-2, 2], ``c1`` in
[-1, 1]), which adds ``codes @ Wc`` to its logits, so images are checked against onnxruntime run on the same
graph.
"""

from __future__ import annotations

import io
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

import cgan_contract as contract
from cgan_contract import runner
from cgan_testing.fakes import LATENT_DIM
from service import dataplane, style_codes
from service.dataplane import ImageRequest, TensorRequest
from service.models import LoadedModel

K = 2
RANGES = [(-2.0, 2.0), (-1.0, 1.0)]
MAX_N = 64


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, publish) -> Path:
    models = tmp_path_factory.mktemp("codes") / "models"
    models.mkdir()
    publish(models, "info", 1, num_codes=K)
    publish(models, "digits", 1)
    return models


@pytest.fixture(scope="module")
def client(root: Path) -> Iterator[TestClient]:
    from service.app import create_app
    from tests.service.conftest import make_settings

    with TestClient(
        create_app(make_settings(root, default_model="info", max_n=MAX_N, max_concurrency=16))
    ) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def session(root: Path):
    return runner.open_session(root / "info" / "1" / contract.MODEL_FILE, threads=1)


def expected(session, labels, seeds, codes) -> np.ndarray:
    """The graph's own output for these labels, seeds (noise rule) and codes, without the service."""
    seeds = np.asarray(seeds, dtype=np.uint64)
    z = contract.noise_for_seeds(seeds, LATENT_DIM)
    images = runner.run(session, np.asarray(labels, dtype=np.int64), z, np.asarray(codes, np.float32))
    return images[..., 0]


def npy(client: TestClient, **body: object) -> np.ndarray:
    response = client.post("/generate", json={"format": "npy", **body})
    assert response.status_code == 200, response.text
    return np.load(io.BytesIO(response.content))


def refused(response, field: str) -> str:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == field and body["detail"].startswith(f"{field}: "), body
    return body["detail"]


def test_the_card_lists_the_codes(client: TestClient) -> None:
    models = {m["name"]: m["card"] for m in client.get("/v1/models").json()["models"]}
    codes = models["info"]["codes"]
    assert [(c["name"], c["low"], c["high"]) for c in codes] == [("slant", -2.0, 2.0), ("c1", -1.0, 1.0)]
    assert models["info"]["inputs"][2] == {"name": "codes", "dtype": "float32", "shape": [None, K]}
    assert models["digits"]["codes"] == []
    assert client.get("/v1/models/info").json()["card"]["codes"] == codes


def test_without_codes_each_image_follows_its_seed(client: TestClient, session) -> None:
    seeds = contract.request_seeds(40, 16)
    batch = npy(client, label=3, n=16, seed=40)
    want = expected(session, [3] * 16, seeds, contract.codes_for_seeds(seeds, LATENT_DIM, RANGES))
    np.testing.assert_array_equal(batch, want)
    for k in (0, 5, 15):
        np.testing.assert_array_equal(batch[k], npy(client, label=3, n=1, seed=40 + k)[0])


def test_codes_for_all_images_or_one_list_per_image(client: TestClient, session) -> None:
    seeds = contract.request_seeds(7, 4)
    shared = npy(client, label=5, n=4, seed=7, codes=[-1.5, 0.25])
    np.testing.assert_array_equal(shared, expected(session, [5] * 4, seeds, [[-1.5, 0.25]] * 4))
    # The codes change the images: the fake adds codes @ Wc to its logits.
    assert (shared != npy(client, label=5, n=4, seed=7)).mean() > 0.2

    rows = [[-2, -1], [2, 1], [0, 0], [1.5, -0.5]]  # integers are numbers too; the range ends are inside
    per_image = npy(client, label=5, n=4, seed=7, codes=rows)
    np.testing.assert_array_equal(per_image, expected(session, [5] * 4, seeds, rows))
    # Image i of a request is the same image alone: {seed: s + i, n: 1} with its own codes.
    for i in range(4):
        np.testing.assert_array_equal(per_image[i], npy(client, label=5, n=1, seed=7 + i, codes=rows[i])[0])


def test_json_gives_each_images_seed_and_codes(client: TestClient) -> None:
    body = client.post("/generate", json={"label": 1, "n": 3, "seed": 9, "format": "json"}).json()
    seeds = contract.request_seeds(9, 3)
    assert body["seeds"] == [9, 10, 11]
    np.testing.assert_allclose(body["codes"], contract.codes_for_seeds(seeds, LATENT_DIM, RANGES), rtol=1e-6)
    given = client.post("/generate", json={"label": 1, "n": 2, "seed": 9, "format": "json", "codes": [1, 0]})
    assert given.json()["codes"] == [[1.0, 0.0], [1.0, 0.0]]
    plain = client.post("/generate", json={"label": 1, "n": 2, "format": "json", "model": "digits"}).json()
    assert "codes" not in plain  # a model without codes answers as it always did


def test_traversal_sweeps_one_code_per_row_of_seeds(client: TestClient, session) -> None:
    n, steps, seed = 3, 5, 100
    grid = npy(client, label=7, n=n, seed=seed, traverse={"code": "slant", "steps": steps})
    assert grid.shape == (n * steps, 28, 28)
    rows = contract.request_seeds(seed, n)
    base = contract.codes_for_seeds(rows, LATENT_DIM, RANGES)
    codes = np.repeat(base, steps, axis=0)
    codes[:, 0] = np.tile(np.linspace(-2.0, 2.0, steps), n)
    np.testing.assert_array_equal(grid, expected(session, [7] * (n * steps), np.repeat(rows, steps), codes))
    # Row r is seed + r: its first column is that seed's image with the swept code at its low end.
    lone = npy(client, label=7, n=1, seed=seed + 1, codes=[-2.0, float(base[1, 1])])
    np.testing.assert_array_equal(grid[steps], lone[0])
    # Columns differ (the code moves the image), rows differ (the seed does).
    assert (grid[0] != grid[steps - 1]).mean() > 0.2 and (grid[0] != grid[steps]).mean() > 0.2

    # By index, with the other code fixed by the request: every row's c1 is 0.5.
    fixed = client.post(
        "/generate",
        json={"label": 7, "n": 2, "seed": seed, "format": "json", "codes": [0, 0.5], "traverse": {"code": 0}},
    ).json()
    assert fixed["seeds"] == [seed] * 8 + [seed + 1] * 8  # steps defaults to 8
    assert [c[1] for c in fixed["codes"]] == [0.5] * 16
    assert [c[0] for c in fixed["codes"][:8]] == pytest.approx(np.linspace(-2, 2, 8).tolist())
    # One list per row sweeps around each row's own codes.
    per_row = npy(
        client, label=7, n=2, seed=seed, codes=[[0, -1], [0, 1]], traverse={"code": "c1", "steps": 3}
    )
    want = expected(session, [7] * 6, np.repeat(rows[:2], 3), [[0, -1], [0, 0], [0, 1]] * 2)
    np.testing.assert_array_equal(per_row, want)


def test_traversal_png_is_a_grid_of_rows_and_steps(client: TestClient) -> None:
    from PIL import Image

    from service import imaging

    body = {"label": 2, "n": 3, "seed": 1, "traverse": {"code": "c1", "steps": 6}}
    png = client.post("/generate", json=body)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.headers["X-Seed"] == "1"
    # One row per seed, one column per step: the npy images laid out 6 to a row.
    cells = npy(client, **body)
    decoded = np.asarray(Image.open(io.BytesIO(png.content)))
    np.testing.assert_array_equal(decoded, imaging.grid(cells[..., None], 6)[..., 0])
    assert decoded.shape[::-1] == imaging.grid_size(18, (28, 28), 6)
    # GET spells the same request in the query string, for <img src> and the playground.
    got = client.get("/generate?label=2&n=3&seed=1&traverse=c1&steps=6")
    assert got.status_code == 200 and got.content == png.content
    fixed = client.post("/generate", json={"label": 2, "n": 3, "seed": 1, "codes": [0.5, -1]})
    assert client.get("/generate?label=2&n=3&seed=1&codes=0.5,-1").content == fixed.content


def test_dataset_takes_shared_codes_and_otherwise_covers_the_range(client: TestClient, session) -> None:
    def archive(**body: object) -> zipfile.ZipFile:
        body = {"per_label": 3, "labels": [4, 1], "seed": 50, "order": "by_class", **body}
        response = client.post("/dataset", json=body)
        assert response.status_code == 200, response.text
        return zipfile.ZipFile(io.BytesIO(response.content))

    default = np.load(io.BytesIO(archive().read("x.npy")))
    seeds = contract.request_seeds(50, 6)
    want = expected(session, [4, 4, 4, 1, 1, 1], seeds, contract.codes_for_seeds(seeds, LATENT_DIM, RANGES))
    np.testing.assert_array_equal(default, want)
    np.testing.assert_array_equal(default[3:], npy(client, label=1, n=3, seed=53))

    fixed = np.load(io.BytesIO(archive(codes=[1.25, -0.75]).read("x.npy")))
    np.testing.assert_array_equal(fixed, expected(session, [4, 4, 4, 1, 1, 1], seeds, [[1.25, -0.75]] * 6))
    np.testing.assert_array_equal(fixed[3:], npy(client, label=1, n=3, seed=53, codes=[1.25, -0.75]))
    manifest = orjson.loads(archive(codes=[1.25, -0.75], format="zip").read("manifest.json"))
    assert manifest["codes"] == [1.25, -0.75]
    assert "codes" not in orjson.loads(archive(format="zip").read("manifest.json"))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "digits", "codes": [0.5]}, "codes"),  # a model without codes
        ({"codes": [0.5]}, "codes"),  # k is 2
        ({"codes": [0.5, 0, 1]}, "codes"),
        ({"codes": []}, "codes"),
        ({"codes": [[0, 0], [0, 0]]}, "codes"),  # two lists for n = 3
        ({"codes": [[0, 0], [0], [0, 0]]}, "codes[1]"),
        ({"codes": [2.5, 0]}, "codes[0]"),  # slant is in [-2, 2]
        ({"codes": [0, 1.5]}, "codes[1]"),  # c1 is in [-1, 1]
        ({"codes": [[0, 0], [0, 0], [0, -1.01]]}, "codes[2][1]"),
        ({"codes": [True, 0]}, "codes"),
        ({"codes": "0.5,0"}, "codes"),
        ({"traverse": {"code": "stroke"}}, "traverse.code"),
        ({"traverse": {"code": 2}}, "traverse.code"),
        ({"traverse": {"code": "slant", "steps": 1}}, "traverse.steps"),
        ({"traverse": {"code": "slant", "steps": 30}}, "traverse.steps"),  # 3 x 30 > MAX_N 64
        ({"traverse": {"code": "slant", "steps": MAX_N + 1}}, "traverse.steps"),
        ({"traverse": {"code": "slant", "extra": 1}}, "traverse.extra"),
        ({"traverse": {"code": "slant"}, "nrow": 4}, "nrow"),
        ({"traverse": {"code": "slant"}, "model": "digits"}, "traverse"),
        ({"traverse": {"code": "slant", "steps": 50}, "model": "digits"}, "traverse"),
        ({"traverse": {"code": "slant"}, "codes": [5, 0]}, "codes[0]"),
    ],
)
def test_generate_refuses_bad_codes_naming_the_field(client: TestClient, body: dict, field: str) -> None:
    refused(client.post("/generate", json={"label": 3, "n": 3, **body}), field)


def test_non_finite_codes_are_refused(client: TestClient) -> None:
    # JSON has no NaN, but Python's parser (and many clients) write and read it.
    for literal in ("NaN", "Infinity", "-Infinity"):
        body = b'{"label": 3, "n": 2, "codes": [0, ' + literal.encode() + b"]}"
        response = client.post("/generate", content=body, headers={"content-type": "application/json"})
        assert "finite" in refused(response, "codes[1]")
    assert "finite" in refused(client.get("/generate?label=3&codes=nan,0"), "codes[0]")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("codes=0.5", "codes"),
        ("codes=0.5,x", "codes[1]"),
        ("codes=0.5,%D9%A1", "codes[1]"),  # Arabic-Indic 1: float() reads it, a query number is ASCII
        ("codes=0.0_1,0", "codes[0]"),  # float() reads "0.0_1" as 0.01
        ("codes=3,0", "codes[0]"),
        ("model=digits&codes=0", "codes"),
        ("traverse=stroke", "traverse.code"),
        ("traverse=slant&steps=1", "steps"),
        ("steps=4", "steps"),
        ("model=digits&traverse=0", "traverse"),
    ],
)
def test_get_generate_refuses_bad_codes_naming_the_field(client: TestClient, query: str, field: str) -> None:
    refused(client.get(f"/generate?label=3&n=2&{query}"), field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "digits", "codes": [0.5]}, "codes"),
        ({"codes": [0.5]}, "codes"),
        ({"codes": [0, -3]}, "codes[1]"),
        ({"codes": [[0, 0]]}, "codes"),  # /dataset takes k values for all images only
    ],
)
def test_dataset_refuses_bad_codes_naming_the_field(client: TestClient, body: dict, field: str) -> None:
    refused(client.post("/dataset", json={"per_label": 2, **body}), field)


def test_the_batcher_merges_requests_with_and_without_codes(client: TestClient, monkeypatch) -> None:
    """Jobs queued together run as one generator call per model; codes per image concatenate."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    requests = [
        ImageRequest(label=3, n=4, seed=1, format="npy"),
        ImageRequest(label=5, n=2, seed=9, format="npy", codes=[1.0, -1.0]),
        ImageRequest(label=1, n=2, seed=4, format="npy", traverse=style_codes.Traversal("slant", 3)),
        ImageRequest(label=6, n=2, seed=0, format="npy", codes=[[0, 0], [-2, 1]]),
        ImageRequest(label=3, n=2, seed=1, format="npy", model="digits"),
    ]
    alone = [dataplane.images_now(runtime, r).body for r in requests]
    calls: list[tuple[str, int]] = []
    original = LoadedModel.generate

    def counted(self: LoadedModel, labels, seeds, *rest, **options):
        calls.append((self.name, len(labels)))
        return original(self, labels, seeds, *rest, **options)

    monkeypatch.setattr(LoadedModel, "generate", counted)
    together = dataplane.run_jobs([dataplane.prepare(runtime, r) for r in requests])
    assert together == alone
    assert sorted(calls) == [("digits", 2), ("info", 4 + 2 + 6 + 2)]


def test_the_batcher_merges_codes_requests_arriving_together(client: TestClient, monkeypatch) -> None:
    """The same through the real batcher: held behind a first run, four requests share the next one."""
    bodies = [
        {"label": 3, "n": 3, "seed": 2, "format": "npy"},
        {"label": 3, "n": 2, "seed": 2, "format": "npy", "codes": [-1, 0.5]},
        {"label": 8, "n": 2, "seed": 6, "format": "npy", "traverse": {"code": "c1", "steps": 4}},
        {"label": 8, "n": 2, "seed": 6, "format": "npy", "codes": [[1, 1], [0, 0]]},
    ]
    alone = [client.post("/generate", json=b).content for b in bodies]
    release, first = threading.Event(), threading.Event()
    sizes: list[int] = []
    original = LoadedModel.generate

    def held(self: LoadedModel, labels, seeds, *rest, **options):
        if not first.is_set():
            first.set()
            assert release.wait(10)
        sizes.append(len(labels))
        return original(self, labels, seeds, *rest, **options)

    monkeypatch.setattr(LoadedModel, "generate", held)
    results: dict[int, bytes] = {}
    blocker = threading.Thread(target=lambda: client.post("/generate", json={"label": 0, "n": 1}))
    threads = [
        threading.Thread(
            target=lambda i=i: results.__setitem__(i, client.post("/generate", json=bodies[i]).content)
        )
        for i in range(len(bodies))
    ]
    batcher = client.app.state.runtime.batcher  # type: ignore[attr-defined]
    try:
        blocker.start()
        assert first.wait(10)
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while batcher.waiting < len(bodies):  # every request queued behind the held run
            assert time.monotonic() < deadline, f"{batcher.waiting} of {len(bodies)} requests queued"
            time.sleep(0.01)
    finally:
        release.set()
        for thread in [blocker, *threads]:
            thread.join(10)
    assert [results[i] for i in range(len(bodies))] == alone
    assert sizes == [1, 3 + 2 + 8 + 2]


# --- the Open Inference Protocol ---------------------------------------------------------------------------


def infer(client: TestClient, model: str, inputs: list[dict], **parameters: object):
    body = {"inputs": inputs, **({"parameters": parameters} if parameters else {})}
    return client.post(f"/v2/models/{model}/infer", json=body)


def images_of(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    output = response.json()["outputs"][0]
    return np.array(output["data"], dtype=np.uint8).reshape(output["shape"])[..., 0]


def label_input(labels: list[int]) -> dict:
    return {"name": "label", "shape": [len(labels)], "datatype": "INT64", "data": labels}


def codes_input(codes: list[list[float]]) -> dict:
    return {"name": "codes", "shape": [len(codes), len(codes[0])], "datatype": "FP32", "data": codes}


def test_oip_metadata_declares_the_codes_input_only_where_there_is_one(client: TestClient) -> None:
    info = client.get("/v2/models/info").json()["inputs"]
    assert info[2] == {"name": "codes", "datatype": "FP32", "shape": [-1, K]}
    assert [t["name"] for t in client.get("/v2/models/digits").json()["inputs"]] == ["z", "label"]


def test_oip_codes_default_to_the_seed_rule_and_may_be_given(client: TestClient, session) -> None:
    by_seed = images_of(infer(client, "info", [label_input([3, 3, 4])], seed=40))
    np.testing.assert_array_equal(by_seed[:2], npy(client, label=3, n=2, seed=40))
    np.testing.assert_array_equal(by_seed[2], npy(client, label=4, n=1, seed=42)[0])

    rows = [[1.0, 0.0], [-1.0, 0.5]]
    given = images_of(infer(client, "info", [label_input([3, 5]), codes_input(rows)], seed=7))
    np.testing.assert_array_equal(given, expected(session, [3, 5], contract.request_seeds(7, 2), rows))

    z = contract.noise(11, 2, LATENT_DIM)
    noise = {"name": "z", "shape": [2, LATENT_DIM], "datatype": "FP32", "data": z.tolist()}
    with_z = images_of(infer(client, "info", [label_input([3, 5]), noise, codes_input(rows)]))
    np.testing.assert_array_equal(with_z, expected(session, [3, 5], contract.request_seeds(11, 2), rows))


def test_oip_binary_codes(client: TestClient, session) -> None:
    codes = np.array([[0.5, -0.5], [-2.0, 1.0]], dtype="<f4")
    header = orjson.dumps(
        {
            "inputs": [
                label_input([2, 9]),
                {
                    "name": "codes",
                    "shape": [2, 2],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 16},
                },
            ],
            "parameters": {"seed": 3},
        }
    )
    response = client.post(
        "/v2/models/info/infer",
        content=header + codes.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    want = expected(session, [2, 9], contract.request_seeds(3, 2), codes)
    np.testing.assert_array_equal(images_of(response), want)


@pytest.mark.parametrize(
    ("model", "extra", "error"),
    [
        ("digits", [codes_input([[0.0], [0.0]])], "codes: model 'digits' v1 has no style codes"),
        ("info", [codes_input([[0.0], [0.0]])], "codes: must be FP32 [2, 2]"),
        ("info", [codes_input([[0.0, 0.0]])], "codes: must be FP32 [2, 2]"),
        ("info", [codes_input([[0.0, 0.0], [0.0, 3.0]])], "codes: 3.0 is outside c1's range"),
        (
            "info",
            [{"name": "z", "shape": [2, LATENT_DIM], "datatype": "FP32", "data": [0.0] * (2 * LATENT_DIM)}],
            "codes: 'info' needs FP32 [2, 2] codes with the 'z' input",
        ),
    ],
)
def test_oip_refuses_bad_codes(client: TestClient, model: str, extra: list[dict], error: str) -> None:
    response = infer(client, model, [label_input([1, 2]), *extra])
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith(error)


def test_oip_codes_through_the_data_plane_refuse_non_finite(client: TestClient) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    codes = np.array([[0.0, np.nan]], dtype=np.float32)
    request = TensorRequest(np.array([1]), lambda *_: b"", codes=codes, model="info", seed=1)
    with pytest.raises(dataplane.RequestError, match="codes: must be finite"):
        dataplane.prepare_tensors(runtime, request)


def test_openapi_caps_traversal_steps(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["components"]["schemas"]["Traverse"]["properties"]["steps"]["maximum"] == MAX_N
    params = {p["name"]: p for p in schema["paths"]["/generate"]["get"]["parameters"]}
    steps = params["steps"]["schema"]
    assert any(branch.get("maximum") == MAX_N for branch in steps.get("anyOf", [steps]))
