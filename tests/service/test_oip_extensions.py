"""The Open Inference Protocol over HTTP as the real ``tritonclient.http`` uses it against a live server with
two workers: every method it has for what the service implements (health, metadata, inference in both wire
forms), the extensions (model configuration, statistics, the repository index) and compressed requests and
answers; then compression's limits, in-process: a gzip bomb is a 413 that costs no more than the limit.
"""

from __future__ import annotations

import gzip
import io
import json
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

import cgan_contract as contract
from cgan_testing.fakes import LATENT_DIM, write_version
from cgan_testing.live_server import LiveServer

TOKEN = "s3cret-token"
MAX_N = 32

pytestmark = pytest.mark.slow


def auth() -> dict[str, str]:
    """A fresh dict each call: tritonclient writes its own headers into the one it is given."""
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, publish, build_onnx) -> Iterator[LiveServer]:
    """digits v1 and v2 loaded, v3 refused (a wrong sha256 in its card); a token; two workers."""
    root = tmp_path_factory.mktemp("extensions") / "models"
    root.mkdir()
    publish(root, "digits", 1, onnx_bytes=build_onnx(weights_seed=1))
    publish(root, "digits", 2, onnx_bytes=build_onnx(weights_seed=2))
    write_version(root, "digits", 3, sha256="0" * 64)
    running = LiveServer(
        root, root.parent / "server.log", API_TOKEN=TOKEN, MAX_N=str(MAX_N), WORKERS="2", MODEL_VERSIONS="3"
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(server.host, connection_timeout=10, network_timeout=30)
    yield c
    c.close()


def _generate_npy(server: LiveServer, **body: object) -> np.ndarray:
    response = httpx.post(
        f"{server.url}/generate", json={"format": "npy", **body}, headers=auth(), timeout=10
    )
    assert response.status_code == 200, response.text
    return np.load(io.BytesIO(response.content)).reshape(-1, 28, 28, 1)


def _label(labels: list[int], binary: bool) -> list[triton.InferInput]:
    label = triton.InferInput("label", [len(labels)], "INT64")
    label.set_data_from_numpy(np.array(labels, dtype=np.int64), binary_data=binary)
    return [label]


def _error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value


def test_every_method_of_the_http_client(server: LiveServer, client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert {"model_configuration", "statistics"} <= set(client.get_server_metadata()["extensions"])
    assert client.is_model_ready("digits") and not client.is_model_ready("digits", "3")
    assert client.get_model_metadata("digits")["versions"] == ["2", "1"]

    config = client.get_model_config("digits")
    assert config == {
        "name": "digits",
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "version_policy": {"specific": {"versions": [2, 1]}},
        "max_batch_size": MAX_N,
        "input": [
            {"name": "z", "data_type": "TYPE_FP32", "dims": [LATENT_DIM], "optional": True},
            {
                "name": "label",
                "data_type": "TYPE_INT64",
                "dims": [1],
                "reshape": {"shape": []},
                "optional": False,
            },
        ],
        "output": [{"name": "image", "data_type": "TYPE_UINT8", "dims": [28, 28, 1]}],
    }
    assert client.get_model_config("digits", "1")["name"] == "digits"

    assert client.get_model_repository_index(headers=auth()) == [
        {"name": "digits", "version": "3", "state": "UNAVAILABLE", "reason": "sha256"},
        {"name": "digits", "version": "2", "state": "READY"},
        {"name": "digits", "version": "1", "state": "READY"},
    ]

    before = client.get_inference_statistics("digits", "1")["model_stats"][0]
    for binary in (True, False):
        result = client.infer(
            "digits",
            _label([5, 5], binary),
            model_version="1",
            outputs=[triton.InferRequestedOutput("image", binary_data=binary)],
            parameters={"seed": 11},
            headers=auth(),
        )
        assert np.array_equal(
            result.as_numpy("image"), _generate_npy(server, label=5, n=2, seed=11, version=1)
        )
    after = client.get_inference_statistics("digits", "1")["model_stats"][0]
    # Two infers and two /generate (the comparisons), two images each: v1's requests over both workers.
    assert after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"] == 4
    assert after["inference_count"] - before["inference_count"] == 8
    assert after["execution_count"] > before["execution_count"]
    assert after["inference_stats"]["compute_infer"]["ns"] > before["inference_stats"]["compute_infer"]["ns"]

    every = client.get_inference_statistics()["model_stats"]
    assert [(s["name"], s["version"]) for s in every] == [("digits", "2"), ("digits", "1")]
    assert [s["version"] for s in client.get_inference_statistics("digits")["model_stats"]] == ["2", "1"]


@pytest.mark.parametrize("request_compression", ["gzip", "deflate"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_compressed_requests_and_answers(
    server: LiveServer, client: triton.InferenceServerClient, request_compression: str, binary: bool
) -> None:
    z = contract.noise(7, 3, LATENT_DIM)
    noise = triton.InferInput("z", list(z.shape), "FP32")
    noise.set_data_from_numpy(z, binary_data=binary)
    result = client.infer(
        "digits",
        [*_label([8, 8, 8], binary), noise],
        outputs=[triton.InferRequestedOutput("image", binary_data=binary)],
        headers=auth(),
        request_compression_algorithm=request_compression,
        response_compression_algorithm="gzip",
    )
    assert np.array_equal(result.as_numpy("image"), _generate_npy(server, label=8, n=3, seed=7))


def test_answers_are_compressed_only_when_asked_and_worth_it(server: LiveServer) -> None:
    body = {
        "inputs": [{"name": "label", "shape": [2], "datatype": "INT64", "data": [1, 2]}],
        "parameters": {"seed": 1},
    }
    url = f"{server.url}/v2/models/digits/infer"
    with httpx.Client(headers=auth(), timeout=10) as http:
        plain = http.post(url, json=body, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        packed = http.post(url, json=body, headers={"Accept-Encoding": "gzip"})
        assert packed.headers["content-encoding"] == "gzip" and "Accept-Encoding" in packed.headers["vary"]
        assert int(packed.headers["content-length"]) < len(plain.content) / 2
        assert packed.json()["outputs"] == plain.json()["outputs"]
        png = http.post(f"{server.url}/generate", json={"label": 1}, headers={"Accept-Encoding": "gzip"})
        assert png.headers["content-type"] == "image/png" and "content-encoding" not in png.headers
        small = http.get(f"{server.url}/healthz", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in small.headers  # under 512 bytes: sent as it is
        # A compressed /generate body, and the refusals.
        request = json.dumps({"label": 3, "n": 2, "seed": 4, "format": "npy"}).encode()
        made = http.post(
            f"{server.url}/generate",
            content=gzip.compress(request),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert made.status_code == 200 and np.array_equal(
            np.load(io.BytesIO(made.content)).reshape(-1, 28, 28, 1),
            _generate_npy(server, label=3, n=2, seed=4),
        )
        for encoding, content, status, detail in (
            ("br", request, 415, "Content-Encoding: 'br' is not supported; send gzip, deflate or identity"),
            ("gzip", request, 400, "Content-Encoding: the body is not valid gzip data"),
            ("gzip", gzip.compress(request)[:-6], 400, "Content-Encoding: the gzip data ends early"),
            (
                "deflate",
                zlib.compress(request) + b"x",
                400,
                "Content-Encoding: bytes after the end of the deflate data",
            ),
        ):
            refused = http.post(
                f"{server.url}/generate",
                content=content,
                headers={"Content-Type": "application/json", "Content-Encoding": encoding},
            )
            assert refused.status_code == status and refused.json() == {
                "detail": detail,
                "field": "Content-Encoding",
            }


def test_bad_input_on_the_extension_routes_names_the_field(server: LiveServer, client) -> None:
    assert _error(lambda: client.get_model_config("nope")).status() == "404"
    assert _error(lambda: client.get_model_config("digits", "7")).message().startswith("version: 'digits' v7")
    assert _error(lambda: client.get_inference_statistics("digits", "7")).status() == "404"
    with httpx.Client(headers=auth(), timeout=10) as http:
        for path in ("/v2/models/digits/versions/0/config", "/v2/models/digits/versions/x/stats"):
            refused = http.get(f"{server.url}{path}")
            assert refused.status_code == 422 and refused.json()["error"].startswith("version:"), refused.text
        index = f"{server.url}/v2/repository/index"
        assert http.post(index, content=b"{not json").json() == {
            "error": "body: the index request is not valid JSON"
        }
        refused = http.post(index, json={"ready": "yes"})
        assert refused.status_code == 422 and refused.json()["error"].startswith("ready:")
        assert [m["state"] for m in http.post(index, json={"ready": True}).json()] == ["READY", "READY"]
        assert httpx.post(index, timeout=10).status_code == 401  # guarded, like every POST


# --- compression's limits, in-process ----------------------------------------------------------------


def _bomb(size: int) -> bytes:
    """``size`` zero bytes, gzip-compressed (about a thousandth of it), made without holding them."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    return b"".join(packer.compress(chunk) for _ in range(size >> 20)) + packer.flush()


def test_a_gzip_bomb_is_a_413_that_costs_no_more_than_the_limit(models_dir: Path, open_client) -> None:
    bomb = _bomb(256 << 20)  # 256 MiB inflated, ~250 KB sent
    limit = 1 << 20
    with open_client(models_dir, max_infer_body_bytes=limit) as client:
        tracemalloc.start()
        try:
            refused = client.post(
                "/v2/models/digits/infer", content=bomb, headers={"Content-Encoding": "gzip"}
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert refused.status_code == 413
        assert refused.json() == {
            "error": f"body: larger than MAX_INFER_BODY_BYTES ({limit} bytes) once decompressed "
            "(Content-Encoding: gzip)"
        }
        assert peak < 8 * limit, f"inflating the bomb took {peak / 2**20:.0f} MiB"
        refused = client.post(
            "/generate", content=_bomb(2 << 20)[:16_000], headers={"Content-Encoding": "gzip"}
        )
        assert refused.status_code == 413 and refused.json()["field"] == "body"
        assert "MAX_BODY_BYTES (16384 bytes) once decompressed" in refused.json()["detail"]
