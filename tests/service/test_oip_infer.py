"""Open Inference Protocol inference, driven by the real ``tritonclient[http]`` against a real server
process, in both wire forms (binary tensors, tritonclient's default, and JSON); plus the guard (token,
overload, body size) on the inference paths."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

import cgan_contract as contract
from cgan_contract import runner
from cgan_testing.fakes import LATENT_DIM, build_generator
from cgan_testing.live_server import LiveServer

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def auth() -> dict[str, str]:
    """A fresh headers dict: tritonclient writes Inference-Header-Content-Length into the one it is given."""
    return dict(AUTH)


MAX_N = 32

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, publish, build_onnx) -> Iterator[LiveServer]:
    """digits v1 and v2 (different weights, both loaded), behind a token, MAX_N 32."""
    root = tmp_path_factory.mktemp("oip") / "models"
    root.mkdir()
    publish(root, "digits", 1, onnx_bytes=build_onnx(weights_seed=1))
    publish(root, "digits", 2, onnx_bytes=build_onnx(weights_seed=2))
    running = LiveServer(root, root.parent / "server.log", API_TOKEN=TOKEN, MAX_N=str(MAX_N))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def triton_client(server: LiveServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.host, connection_timeout=10, network_timeout=30)
    yield client
    client.close()


def _generate_npy(server: LiveServer, **body: object) -> bytes:
    response = httpx.post(
        f"{server.url}/generate", json={"format": "npy", **body}, headers=auth(), timeout=10
    )
    assert response.status_code == 200, response.text
    return response.content


def _inputs(labels: list[int], binary: bool, z: np.ndarray | None = None) -> list[triton.InferInput]:
    label = triton.InferInput("label", [len(labels)], "INT64")
    label.set_data_from_numpy(np.array(labels, dtype=np.int64), binary_data=binary)
    inputs = [label]
    if z is not None:
        noise = triton.InferInput("z", list(z.shape), "FP32")
        noise.set_data_from_numpy(z, binary_data=binary)
        inputs.append(noise)
    return inputs


def _outputs(binary: bool) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput("image", binary_data=binary)]


def _error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value


def test_server_and_model_metadata_and_readiness(triton_client: triton.InferenceServerClient) -> None:
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    server_meta = triton_client.get_server_metadata()
    assert server_meta["name"] == "cgan-synth"
    assert set(server_meta["extensions"]) >= {"binary_tensor_data", "parameters"}

    meta = triton_client.get_model_metadata("digits")
    assert meta["platform"] == "onnxruntime_onnx" and meta["versions"] == ["2", "1"]
    assert {t["name"]: (t["datatype"], t["shape"]) for t in meta["inputs"]} == {
        "z": ("FP32", [-1, LATENT_DIM]),
        "label": ("INT64", [-1]),
    }
    assert meta["outputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, 28, 28, 1]}]
    assert triton_client.get_model_metadata("digits", "1")["name"] == "digits"

    assert triton_client.is_model_ready("digits")
    assert triton_client.is_model_ready("digits", "1") and triton_client.is_model_ready("digits", "2")
    assert not triton_client.is_model_ready("digits", "7")
    assert not triton_client.is_model_ready("nope")
    missing = _error(lambda: triton_client.get_model_metadata("digits", "7"))
    assert missing.status() == "404" and "loaded: 2, 1" in missing.message()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_by_seed_equals_generate(
    server: LiveServer, triton_client: triton.InferenceServerClient, binary: bool
) -> None:
    result = triton_client.infer(
        "digits",
        _inputs([7, 7, 7, 7], binary),
        outputs=_outputs(binary),
        parameters={"seed": 40},
        headers=auth(),
        request_id="req-1",
    )
    images = result.as_numpy("image")
    assert images.dtype == np.uint8 and images.shape == (4, 28, 28, 1)
    response = result.get_response()
    assert response["model_name"] == "digits" and response["model_version"] == "2"
    assert response["id"] == "req-1" and response["parameters"] == {"seed": 40}
    # The same bytes /generate gives for the same model, version, label and seeds.
    npy = _generate_npy(server, label=7, n=4, seed=40)
    assert np.load(io.BytesIO(npy)).tobytes() == images.tobytes()


def test_infer_mixed_labels_and_default_binary_output(
    server: LiveServer, triton_client: triton.InferenceServerClient
) -> None:
    # No outputs named: tritonclient asks for binary_data_output, the protocol's default path.
    images = triton_client.infer(
        "digits", _inputs([3, 9, 0], True), parameters={"seed": 5}, headers=auth()
    ).as_numpy("image")
    for i, label in enumerate([3, 9, 0]):
        expected = np.load(io.BytesIO(_generate_npy(server, label=label, n=1, seed=5 + i)))
        assert np.array_equal(images[i, ..., 0], expected[0]), i


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_by_explicit_z(
    server: LiveServer, triton_client: triton.InferenceServerClient, binary: bool
) -> None:
    # The seed rule's own noise, sent explicitly, gives the seeded images; other noise gives others.
    z = contract.noise(100, 3, LATENT_DIM)
    result = triton_client.infer(
        "digits", _inputs([1, 1, 1], binary, z), outputs=_outputs(binary), headers=auth()
    )
    assert "parameters" not in result.get_response()  # no seed was used
    npy = _generate_npy(server, label=1, n=3, seed=100)
    assert np.load(io.BytesIO(npy)).tobytes() == result.as_numpy("image").tobytes()
    other = triton_client.infer(
        "digits", _inputs([1, 1, 1], binary, -z), outputs=_outputs(binary), headers=auth()
    )
    assert other.as_numpy("image").tobytes() != npy[-3 * 784 :]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_pinned_version(
    server: LiveServer, triton_client: triton.InferenceServerClient, binary: bool
) -> None:
    results = {
        version: triton_client.infer(
            "digits",
            _inputs([4, 4], binary),
            model_version=version,
            outputs=_outputs(binary),
            parameters={"seed": 9},
            headers=auth(),
        )
        for version in ("1", "2")
    }
    for version, result in results.items():
        assert result.get_response()["model_version"] == version
        npy = _generate_npy(server, label=4, n=2, seed=9, version=int(version))
        assert np.load(io.BytesIO(npy)).tobytes() == result.as_numpy("image").tobytes()
    assert results["1"].as_numpy("image").tobytes() != results["2"].as_numpy("image").tobytes()


def test_infer_errors(triton_client: triton.InferenceServerClient) -> None:
    def infer(inputs, **kwargs):
        kwargs.setdefault("headers", auth())
        return lambda: triton_client.infer(kwargs.pop("model", "digits"), inputs, **kwargs)

    unknown = _error(infer(_inputs([1], True), model="nope"))
    assert unknown.status() == "404" and "'nope'" in unknown.message()

    unloaded = _error(infer(_inputs([1], True), model_version="7"))
    assert unloaded.status() == "404"
    assert unloaded.message() == "version: 'digits' v7 is not loaded; loaded: 2, 1"

    wrong_dtype = triton.InferInput("label", [2], "INT32")
    wrong_dtype.set_data_from_numpy(np.array([1, 2], dtype=np.int32))
    error = _error(infer([wrong_dtype]))
    assert error.status() == "422" and error.message().startswith("label: datatype 'INT32'")

    error = _error(infer(_inputs([1, 2], True, np.zeros((2, LATENT_DIM + 3), np.float32))))
    assert error.status() == "422" and error.message().startswith("z: must be FP32 [2, 8]")

    error = _error(infer(_inputs([1] * (MAX_N + 1), True)))
    assert error.status() == "422" and error.message() == f"label: at most MAX_N ({MAX_N}) images per request"

    error = _error(infer(_inputs([10], True)))
    assert error.status() == "422" and error.message().startswith("label: 10 is not a class index")

    error = _error(infer(_inputs([1], True, np.zeros((1, LATENT_DIM), np.float32)), parameters={"seed": 3}))
    assert error.status() == "422" and error.message().startswith("seed:")

    error = _error(infer(_inputs([1], True), parameters={"seed": -1}))
    assert error.status() == "422" and error.message().startswith("seed:")

    error = _error(infer(_inputs([1], True), outputs=[triton.InferRequestedOutput("logits")]))
    assert error.status() == "422" and error.message().startswith("outputs[0].name:")

    missing_token = _error(infer(_inputs([1], True), headers={}))
    assert missing_token.status() == "401" and "bearer token" in missing_token.message()
    wrong_token = _error(infer(_inputs([1], True), headers={"Authorization": "Bearer nope"}))
    assert wrong_token.status() == "401"


def _post(server: LiveServer, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v2/models/digits/infer", content=body, headers={**AUTH, **(headers or {})}, timeout=10
    )


_TRUNCATED = json.dumps(
    {"inputs": [{"name": "label", "shape": [1], "datatype": "INT64", "parameters": {"binary_data_size": 8}}]}
).encode()


@pytest.mark.parametrize(
    ("body", "headers", "status", "start"),
    [
        (b"{not json", None, 422, "body: the inference request is not valid JSON"),
        (b"", None, 422, "body: the inference request is not valid JSON"),
        (b'{"inputs": []}', None, 422, "inputs: List should have at least 1 item"),
        (b'{"inputs": [{"name": "label", "shape": [1], "datatype": "INT64"}]}', None, 422, "label: no data"),
        (
            b'{"inputs": [{"name": "label", "shape": [2], "datatype": "INT64", "data": [1]}]}',
            None,
            422,
            "label: 1 values in data, shape [2] needs 2",
        ),
        (
            b'{"inputs": [{"name": "label", "shape": [1], "datatype": "INT64", "data": [1.5]}]}',
            None,
            422,
            "label: data must be integers",
        ),
        (
            b'{"inputs": [{"name": "label", "shape": [1, 1], "datatype": "INT64", "data": [1]}]}',
            None,
            422,
            "label: must be INT64 [N]",
        ),
        (
            b'{"inputs": [{"name": "labels", "shape": [1], "datatype": "INT64", "data": [1]}]}',
            None,
            422,
            "inputs[0].name: unknown input 'labels'",
        ),
        (
            b'{"inputs": [{"name": "z", "shape": [1, 8], "datatype": "FP32", "data": [0,0,0,0,0,0,0,0]}]}',
            None,
            422,
            "inputs: the 'label' input (INT64 [N]) is required",
        ),
        (
            _TRUNCATED + b"\x01\x00\x00\x00",  # 4 of the 8 bytes the header announces
            {"Inference-Header-Content-Length": str(len(_TRUNCATED))},
            400,
            "label: the body ends inside this tensor's binary data",
        ),
        (
            b'{"inputs": []}',
            {"Inference-Header-Content-Length": "999"},
            400,
            "Inference-Header-Content-Length:",
        ),
        (b'{"inputs": []}', {"Content-Encoding": "br"}, 415, "Content-Encoding: 'br' is not supported"),
        (b"{}", {"Content-Encoding": "gzip"}, 400, "Content-Encoding: the body is not valid gzip data"),
    ],
    ids=lambda v: v if isinstance(v, int) else None,
)
def test_malformed_requests_name_the_part_at_fault(
    server: LiveServer, body: bytes, headers: dict[str, str] | None, status: int, start: str
) -> None:
    response = _post(server, body, headers)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and response.json()["error"].startswith(start), response.text


def test_binary_request_by_hand_matches_json(server: LiveServer) -> None:
    # The byte layout itself, without tritonclient: header length, then label bytes, then z bytes.
    z = contract.noise(0, 2, LATENT_DIM)
    header = json.dumps(
        {
            "inputs": [
                {"name": "label", "shape": [2], "datatype": "INT64", "parameters": {"binary_data_size": 16}},
                {
                    "name": "z",
                    "shape": [2, LATENT_DIM],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": z.nbytes},
                },
            ],
            "outputs": [{"name": "image", "parameters": {"binary_data": True}}],
        }
    ).encode()
    body = header + np.array([5, 6], "<i8").tobytes() + z.astype("<f4").tobytes()
    response = _post(server, body, {"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
    split = int(response.headers["inference-header-content-length"])
    meta = json.loads(response.content[:split])
    assert meta["outputs"][0]["parameters"] == {"binary_data_size": 2 * 784}
    assert len(response.content) == split + 2 * 784
    assert response.headers["x-model-version"] == "2"
    pixels = np.frombuffer(response.content[split:], np.uint8).reshape(meta["outputs"][0]["shape"])
    # The pixels themselves: the same inputs as JSON, and the served graph run here, give the same images.
    as_json = {
        "inputs": [
            {"name": "label", "shape": [2], "datatype": "INT64", "data": [5, 6]},
            {"name": "z", "shape": [2, LATENT_DIM], "datatype": "FP32", "data": z.ravel().tolist()},
        ]
    }
    json_response = _post(server, json.dumps(as_json).encode())
    assert json_response.status_code == 200, json_response.text
    output = json_response.json()["outputs"][0]
    np.testing.assert_array_equal(np.array(output["data"], np.uint8).reshape(output["shape"]), pixels)
    session = runner.open_session(build_generator(weights_seed=2), threads=1)
    np.testing.assert_array_equal(pixels, runner.run(session, np.array([5, 6]), z))
    assert pixels.any() and not np.array_equal(pixels[0], pixels[1])


# --- the guard, in-process (a gate holds the generator so the test decides when work finishes) ---------


_SMALL = {
    "inputs": [{"name": "label", "shape": [1], "datatype": "INT64", "data": [1]}],
    "parameters": {"seed": 1},
}


def test_infer_is_overload_guarded_like_generate(models_dir: Path, open_client, gate, metric) -> None:
    entered, release = gate
    with open_client(models_dir, max_concurrency=1, max_queue=0, retry_after_seconds=2) as client:
        thread = threading.Thread(target=lambda: client.post("/generate", json={"label": 1}))
        thread.start()
        assert entered.wait(10)
        for path in ("/v2/models/digits/infer", "/v2/models/digits/versions/1/infer"):
            rejected = client.post(path, json=_SMALL)
            assert rejected.status_code == 429 and rejected.headers["retry-after"] == "2"
            assert rejected.json()["error"].startswith("overloaded")
        route = {"route": "/v2/models/{name}/infer", "method": "POST", "status": "429"}
        assert metric(client, "cgan_http_requests_total", route) == 1
        release.set()
        thread.join(10)
        assert client.post("/v2/models/digits/infer", json=_SMALL).status_code == 200


def test_infer_body_limit_is_its_own(models_dir: Path, open_client) -> None:
    with open_client(models_dir, max_body_bytes=1024, max_infer_body_bytes=4096) as client:
        # Noise for 16 images is over MAX_BODY_BYTES but within MAX_INFER_BODY_BYTES.
        z = contract.noise(0, 16, LATENT_DIM).round(3).tolist()
        body = {
            "inputs": [
                {"name": "label", "shape": [16], "datatype": "INT64", "data": [2] * 16},
                {"name": "z", "shape": [16, LATENT_DIM], "datatype": "FP32", "data": z},
            ]
        }
        assert 1024 < len(json.dumps(body)) < 4096
        assert client.post("/v2/models/digits/infer", json=body).status_code == 200
        too_big = client.post("/v2/models/digits/infer", content=b" " * 5000)
        assert too_big.status_code == 413
        assert too_big.json() == {"error": "body: larger than MAX_INFER_BODY_BYTES (4096 bytes)"}
