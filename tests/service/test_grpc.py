"""The Open Inference Protocol over gRPC, driven by the real ``tritonclient.grpc`` (and, for what that
client cannot send or read, its own generated stubs) against a real ``python -m service`` with two workers
sharing the gRPC port: every RPC the service implements, images equal to ``/generate``'s, errors that name
the tensor, the token, the shared admission limiter, statistics summed over the workers, the drain on
SIGTERM and a busy GRPC_PORT refused at start.

This module never imports the service's own generated messages (``service.grpc.proto``): they define the
same ``inference.*`` names as tritonclient's in protobuf's one default pool, which refuses a second
definition. The servers run in their own processes; tests/service/test_grpc_stubs.py compares the two
definitions in subprocesses.
"""

from __future__ import annotations

import io
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

import cgan_contract as contract
from cgan_testing.fakes import LATENT_DIM, write_version
from cgan_testing.live_server import REPO, LiveServer, free_port

TOKEN = "s3cret-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
MAX_N = 32

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, publish, build_onnx) -> Iterator[LiveServer]:
    """digits v1 and v2 (different weights, both loaded) and a v3 refused at load (its card's sha256 is
    wrong), behind a token, MAX_N 32, two workers."""
    root = tmp_path_factory.mktemp("grpc") / "models"
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
    with triton.InferenceServerClient(server.grpc_host) as grpc_client:
        yield grpc_client


@pytest.fixture(scope="module")
def stub(server: LiveServer) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    """tritonclient's own generated stub, for requests its helper methods cannot make."""
    with grpc.insecure_channel(server.grpc_host) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def _generate_npy(server: LiveServer, **body: object) -> np.ndarray:
    response = httpx.post(
        f"{server.url}/generate",
        json={"format": "npy", **body},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return np.load(io.BytesIO(response.content)).reshape(-1, 28, 28, 1)  # .npy drops the channel axis


def _inputs(labels: list[int], z: np.ndarray | None = None) -> list[triton.InferInput]:
    label = triton.InferInput("label", [len(labels)], "INT64")
    label.set_data_from_numpy(np.array(labels, dtype=np.int64))
    inputs = [label]
    if z is not None:
        noise = triton.InferInput("z", list(z.shape), "FP32")
        noise.set_data_from_numpy(z)
        inputs.append(noise)
    return inputs


def _error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value


def _rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def test_health_metadata_config_and_index(
    client: triton.InferenceServerClient, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    assert client.is_server_live() and client.is_server_ready()
    server_meta = client.get_server_metadata(as_json=True)
    assert server_meta["name"] == "cgan-synth"
    assert {"parameters", "model_configuration", "statistics"} <= set(server_meta["extensions"])

    assert client.is_model_ready("digits") and client.is_model_ready("digits", "1")
    assert not client.is_model_ready("digits", "3")  # refused at load
    assert not client.is_model_ready("nope")

    meta = client.get_model_metadata("digits", as_json=True)
    assert meta["platform"] == "onnxruntime_onnx" and meta["versions"] == ["2", "1"]
    assert {t["name"]: (t["datatype"], t["shape"]) for t in meta["inputs"]} == {
        "z": ("FP32", ["-1", str(LATENT_DIM)]),  # int64 fields are strings in protobuf's JSON
        "label": ("INT64", ["-1"]),
    }
    assert client.get_model_metadata("digits", "1").name == "digits"

    config = client.get_model_config("digits").config
    assert (config.name, config.platform, config.backend) == ("digits", "onnxruntime_onnx", "onnxruntime")
    assert config.max_batch_size == MAX_N and list(config.version_policy.specific.versions) == [2, 1]
    inputs = {i.name: i for i in config.input}
    assert list(inputs["z"].dims) == [LATENT_DIM] and inputs["z"].optional
    assert list(inputs["label"].dims) == [1] and inputs["label"].HasField("reshape")
    assert not inputs["label"].optional
    assert pb.model__config__pb2.DataType.Name(inputs["label"].data_type) == "TYPE_INT64"
    (output,) = config.output
    assert (output.name, list(output.dims)) == ("image", [28, 28, 1])

    index = client.get_model_repository_index(headers=AUTH).models
    assert [(m.name, m.version, m.state, m.reason) for m in index] == [
        ("digits", "3", "UNAVAILABLE", "sha256"),
        ("digits", "2", "READY", ""),
        ("digits", "1", "READY", ""),
    ]
    ready = stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True), metadata=_md(), timeout=10)
    assert [m.version for m in ready.models] == ["2", "1"]
    named = pb.RepositoryIndexRequest(repository_name="models")
    error = _rpc_error(lambda: stub.RepositoryIndex(named, metadata=_md(), timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("repository_name:")


def _md() -> list[tuple[str, str]]:
    return list(AUTH.items())


def test_infer_by_seed_equals_generate(server: LiveServer, client: triton.InferenceServerClient) -> None:
    started = time.perf_counter()
    result = client.infer(
        "digits", _inputs([7, 7, 7, 7]), parameters={"seed": 40}, headers=AUTH, request_id="req-1"
    )
    took = time.perf_counter() - started
    images = result.as_numpy("image")
    assert images.dtype == np.uint8 and images.shape == (4, 28, 28, 1)
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("digits", "2", "req-1")
    assert response.parameters["seed"].int64_param == 40
    assert len(response.raw_output_contents) == 1
    assert np.array_equal(_generate_npy(server, label=7, n=4, seed=40), images)
    assert took < 5

    # Mixed labels, a seed per image: image i is /generate's {seed: 5 + i, n: 1} of its label.
    images = client.infer("digits", _inputs([3, 9, 0]), parameters={"seed": 5}, headers=AUTH).as_numpy(
        "image"
    )
    for i, label in enumerate([3, 9, 0]):
        assert np.array_equal(images[i], _generate_npy(server, label=label, n=1, seed=5 + i)[0]), i

    # No seed: a random one, echoed so the images can be made again.
    result = client.infer("digits", _inputs([1]), headers=AUTH)
    seed = result.get_response().parameters["seed"].int64_param
    assert np.array_equal(result.as_numpy("image"), _generate_npy(server, label=1, n=1, seed=seed))


def test_infer_by_explicit_z_and_typed_contents(
    server: LiveServer, client: triton.InferenceServerClient, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    z = contract.noise(100, 3, LATENT_DIM)
    result = client.infer("digits", _inputs([1, 1, 1], z), headers=AUTH)
    assert "seed" not in result.get_response().parameters
    expected = _generate_npy(server, label=1, n=3, seed=100)
    assert np.array_equal(result.as_numpy("image"), expected)
    # The same tensors in the typed contents fields instead of raw_input_contents.
    request = pb.ModelInferRequest(model_name="digits")
    label = request.inputs.add(name="label", datatype="INT64", shape=[3])
    label.contents.int64_contents.extend([1, 1, 1])
    noise = request.inputs.add(name="z", datatype="FP32", shape=[3, LATENT_DIM])
    noise.contents.fp32_contents.extend(z.ravel().tolist())
    response = stub.ModelInfer(request, metadata=_md(), timeout=10)
    pixels = np.frombuffer(response.raw_output_contents[0], np.uint8).reshape(response.outputs[0].shape)
    assert np.array_equal(pixels, expected)


def test_infer_pinned_version(server: LiveServer, client: triton.InferenceServerClient) -> None:
    results = {
        version: client.infer(
            "digits", _inputs([4, 4]), model_version=version, parameters={"seed": 9}, headers=AUTH
        )
        for version in ("1", "2")
    }
    for version, result in results.items():
        assert result.get_response().model_version == version
        expected = _generate_npy(server, label=4, n=2, seed=9, version=int(version))
        assert np.array_equal(result.as_numpy("image"), expected)
    assert not np.array_equal(results["1"].as_numpy("image"), results["2"].as_numpy("image"))


def test_bad_input_is_invalid_argument_naming_the_tensor(
    client: triton.InferenceServerClient, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    def infer(inputs, **kwargs):
        kwargs.setdefault("headers", AUTH)
        return lambda: client.infer(kwargs.pop("model", "digits"), inputs, **kwargs)

    invalid = "StatusCode.INVALID_ARGUMENT"
    wrong_dtype = triton.InferInput("label", [2], "INT32")
    wrong_dtype.set_data_from_numpy(np.array([1, 2], dtype=np.int32))
    cases = [
        (infer([wrong_dtype]), "label: datatype 'INT32'; the model takes INT64"),
        (infer(_inputs([1, 2], np.zeros((2, LATENT_DIM + 3), np.float32))), "z: must be FP32 [2, 8]"),
        (infer(_inputs([1] * (MAX_N + 1))), f"label: at most MAX_N ({MAX_N}) images per request"),
        (infer(_inputs([10])), "label: 10 is not a class index"),
        (infer(_inputs([1], np.zeros((1, LATENT_DIM), np.float32)), parameters={"seed": 3}), "seed:"),
        (infer(_inputs([1]), parameters={"seed": -1}), "seed: the seed parameter must be an integer"),
        (infer(_inputs([1]), parameters={"seed": "7"}), "seed: the seed parameter must be an integer"),
        (infer(_inputs([1]), outputs=[triton.InferRequestedOutput("logits")]), "outputs[0].name:"),
        (infer(_inputs([1]), model_version="1.0"), "model_version: '1.0' is not a model version"),
        (infer(_inputs([1]), model="no/such"), "model_name: 'no/such' is not a valid model name"),
    ]
    for call, start in cases:
        error = _error(call)
        assert error.status() == invalid and error.message().startswith(start), (start, error.message())

    # What tritonclient's helpers never send: raw bytes that do not add up, both forms at once, no label.
    def raw(**fields) -> grpc.RpcError:
        request = pb.ModelInferRequest(model_name="digits", **fields)
        return _rpc_error(lambda: stub.ModelInfer(request, metadata=_md(), timeout=10))

    label = pb.ModelInferRequest.InferInputTensor(name="label", datatype="INT64", shape=[2])
    error = raw(inputs=[label], raw_input_contents=[b"\0" * 12])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "label: 12 bytes in raw_input_contents[0]; INT64 [2] is 16 bytes"
    assert raw(inputs=[label], raw_input_contents=[]).details().startswith("label: no data")
    error = raw(inputs=[label, label], raw_input_contents=[b"\0" * 16])
    assert error.details().startswith("raw_input_contents: 1 entries for 2 inputs")
    z = pb.ModelInferRequest.InferInputTensor(name="z", datatype="FP32", shape=[1, LATENT_DIM])
    error = raw(inputs=[z], raw_input_contents=[b"\0" * 4 * LATENT_DIM])
    assert error.details() == "inputs: the 'label' input (INT64 [N]) is required"
    named = pb.ModelInferRequest.InferInputTensor(name="labels", datatype="INT64", shape=[1])
    assert raw(inputs=[named], raw_input_contents=[b"\0" * 8]).details().startswith("inputs[0].name: unknown")
    # A shape whose element count is 0 but whose dimensions no array can have: named, not INTERNAL.
    for shape in ([0, 2**62], [2**40]):
        huge = pb.ModelInferRequest.InferInputTensor(name="label", datatype="INT64", shape=shape)
        error = raw(inputs=[huge], raw_input_contents=[b""])
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (shape, error.details())
        assert error.details().startswith("label: shape [") and "is too large" in error.details()


def test_unknown_models_and_versions_are_not_found(client: triton.InferenceServerClient) -> None:
    not_found = "StatusCode.NOT_FOUND"
    unknown = _error(lambda: client.infer("nope", _inputs([1]), headers=AUTH))
    assert unknown.status() == not_found and "'nope'" in unknown.message()
    unloaded = _error(lambda: client.infer("digits", _inputs([1]), model_version="7", headers=AUTH))
    assert unloaded.status() == not_found
    assert unloaded.message() == "version: 'digits' v7 is not loaded; loaded: 2, 1"
    for call in (
        lambda: client.get_model_metadata("digits", "7"),
        lambda: client.get_model_config("nope"),
        lambda: client.get_inference_statistics("digits", "7"),
    ):
        assert _error(call).status() == not_found
    bad_version = _error(lambda: client.get_model_config("digits", "latest"))
    assert bad_version.status() == "StatusCode.INVALID_ARGUMENT" and bad_version.message().startswith(
        "version:"
    )


def test_a_message_over_grpc_max_message_bytes_is_refused_by_grpc(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    # GRPC_MAX_MESSAGE_BYTES (1 MiB) bounds what grpc holds per RPC before the service sees it.
    request = pb.ModelInferRequest(model_name="digits")
    request.inputs.add(name="label", datatype="INT64", shape=[1])
    request.raw_input_contents.append(b"\0" * (1024 * 1024 + 1))
    error = _rpc_error(lambda: stub.ModelInfer(request, metadata=[("authorization", f"Bearer {TOKEN}")]))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert "1048576" in error.details()


def test_bad_fields_on_every_rpc_are_named(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    cases = [
        (
            stub.ModelReady,
            pb.ModelReadyRequest(name="digits", version="2.0"),
            "version: '2.0' is not a model",
        ),
        (stub.ModelReady, pb.ModelReadyRequest(), "name: a model name is required"),
        (stub.ModelMetadata, pb.ModelMetadataRequest(name="Digits!"), "name: 'Digits!' is not a valid model"),
        (stub.ModelMetadata, pb.ModelMetadataRequest(name="digits", version="-1"), "version: '-1' is not"),
        (stub.ModelConfig, pb.ModelConfigRequest(name="digits", version="0"), "version: '0' is not a model"),
        (stub.ModelStatistics, pb.ModelStatisticsRequest(version="1"), "version: give the model's name"),
        (stub.ModelStatistics, pb.ModelStatisticsRequest(name="digits", version="x"), "version: 'x' is not"),
    ]
    for method, request, start in cases:
        error = _rpc_error(lambda m=method, r=request: m(r, timeout=10))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (start, error.details())
        assert error.details().startswith(start), (start, error.details())
    # Not loaded is not ready, not an error (as Triton answers).
    assert not stub.ModelReady(pb.ModelReadyRequest(name="digits", version="9"), timeout=10).ready
    # An RPC the service does not implement: grpc's UNIMPLEMENTED.
    error = _rpc_error(
        lambda: stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="x"), timeout=10)
    )
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


def test_the_token_is_required_on_the_guarded_rpcs(client: triton.InferenceServerClient) -> None:
    for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": f"Basic {TOKEN}"}):
        for call in (
            lambda h=headers: client.infer("digits", _inputs([1]), headers=h),
            lambda h=headers: client.get_model_repository_index(headers=h),
        ):
            error = _error(call)
            assert error.status() == "StatusCode.UNAUTHENTICATED"
            assert error.message() == "authorization: a valid bearer token is required"
    assert client.is_server_live()  # health and metadata are open, as over HTTP
    # The scheme is case-insensitive, the token compared whole.
    assert client.infer("digits", _inputs([1]), headers={"authorization": f"bearer {TOKEN}"})
    assert _error(lambda: client.infer("digits", _inputs([1]), headers={"authorization": f"Bearer {TOKEN}x"}))


def _samples(url: str, family: str) -> dict[tuple, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        if f.name == family
        for s in f.samples
    }


def test_statistics_count_both_workers_and_match_metrics(server: LiveServer) -> None:
    """Requests on fresh connections land on either worker; the statistics sum them, from the very
    families /metrics exposes."""

    def stats() -> tuple[int, int, int]:
        with triton.InferenceServerClient(server.grpc_host) as c:
            (s,) = c.get_inference_statistics("digits", "1").model_stats
            return s.inference_stats.success.count, s.inference_count, s.inference_stats.success.ns

    success, images, ns = stats()
    sent = 8
    for _ in range(sent):  # a new channel each: a new connection, which the kernel hands to either worker
        with triton.InferenceServerClient(server.grpc_host) as c:
            c.infer("digits", _inputs([2, 2, 2]), model_version="1", headers=AUTH)
    after_success, after_images, after_ns = stats()
    assert (after_success - success, after_images - images) == (sent, 3 * sent)
    assert after_ns > ns

    # The same counters over HTTP and in /metrics.
    http = httpx.get(f"{server.url}/v2/models/digits/versions/1/stats", timeout=10).json()["model_stats"][0]
    assert http["inference_stats"]["success"]["count"] == after_success
    assert http["inference_count"] == after_images
    requests = _samples(server.url, "cgan_model_request_duration_seconds")
    key = (
        "cgan_model_request_duration_seconds_count",
        (("model", "digits"), ("outcome", "success"), ("version", "1")),
    )
    assert requests[key] == after_success
    # Every RPC is in the HTTP request families, by its method path, with the HTTP-equivalent status.
    counted = _samples(server.url, "cgan_http_requests")
    route = "/inference.GRPCInferenceService/ModelInfer"
    ok = ("cgan_http_requests_total", (("method", "GRPC"), ("route", route), ("status", "200")))
    assert counted[ok] >= sent
    refused = ("cgan_http_requests_total", (("method", "GRPC"), ("route", route), ("status", "401")))
    assert counted.get(refused, 0) >= 0


def _in_flight(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return next(
        s.value
        for f in text_string_to_metric_families(text)
        if f.name == "cgan_http_requests_in_flight"
        for s in f.samples
    )


def _slow_server(tmp_path: Path, models_dir: Path, **env: str) -> LiveServer:
    """One worker whose big requests take seconds: one image per onnxruntime run (RUN_MAX_IMAGES=1)."""
    return LiveServer(
        models_dir, tmp_path / "server.log", WORKERS="1", MAX_N="65536", RUN_MAX_IMAGES="1", **env
    )


def test_overload_is_resource_exhausted_with_a_retry_hint(tmp_path: Path, models_dir: Path) -> None:
    """One slot, no queue, shared with HTTP: while a slow /generate holds it, ModelInfer is refused."""
    running = _slow_server(tmp_path, models_dir, MAX_CONCURRENCY="1", MAX_QUEUE="0", RETRY_AFTER_SECONDS="3")
    try:
        slow = threading.Thread(
            target=lambda: httpx.post(
                f"{running.url}/generate", json={"label": 1, "n": 16384, "format": "npy"}, timeout=120
            )
        )
        slow.start()
        deadline = time.monotonic() + 10
        while _in_flight(running.url) < 2:  # the slow one and this scrape
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with grpc.insecure_channel(running.grpc_host) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            request = pb.ModelInferRequest(model_name="digits")
            label = request.inputs.add(name="label", datatype="INT64", shape=[1])
            label.contents.int64_contents.append(1)
            error = _rpc_error(lambda: stub.ModelInfer(request, timeout=10))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert error.details().startswith("overloaded: MAX_CONCURRENCY requests running")
            assert ("retry-after", "3") in error.trailing_metadata()
            assert stub.ServerLive(pb.ServerLiveRequest()).live  # open RPCs are not admitted
        slow.join(120)
        rejected = _samples(running.url, "cgan_http_requests_rejected")
        assert rejected[("cgan_http_requests_rejected_total", (("reason", "overload"),))] == 1
        counted = _samples(running.url, "cgan_http_requests")
        route = "/inference.GRPCInferenceService/ModelInfer"
        key = ("cgan_http_requests_total", (("method", "GRPC"), ("route", route), ("status", "429")))
        assert counted[key] == 1
        with triton.InferenceServerClient(running.grpc_host) as client:  # the slot is back
            assert client.infer("digits", _inputs([1])).as_numpy("image").shape == (1, 28, 28, 1)
    finally:
        running.stop()


def test_sigterm_drains_grpc_too(tmp_path: Path, models_dir: Path) -> None:
    """After SIGTERM: ServerReady false while the drain lasts, yet RPCs are served; one still running when
    serving stops gets its answer within SHUTDOWN_GRACE_SECONDS; the process exits 0."""
    drain = 0.5
    running = _slow_server(
        tmp_path, models_dir, SHUTDOWN_DRAIN_SECONDS=str(drain), SHUTDOWN_GRACE_SECONDS="30"
    )
    try:
        with triton.InferenceServerClient(running.grpc_host) as client:
            signalled = time.monotonic()
            running.process.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            assert client.is_server_live() and not client.is_server_ready()  # draining, still serving
            # One image per onnxruntime run: seconds of work, started in the drain, ending after it.
            result = client.infer("digits", _inputs([3] * 32768), parameters={"seed": 0}, client_timeout=60)
            answered = time.monotonic()
        assert result.as_numpy("image").shape == (32768, 28, 28, 1)
        assert answered - signalled > drain  # it was running when serving stopped
        assert running.process.wait(30) == 0
        assert "Shutting down" in running.log.read_text()
    finally:
        running.stop()


def test_a_busy_or_invalid_grpc_port_is_refused_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        for value, line in (
            (
                str(busy),
                f"cgan-serve: error: cannot listen on 127.0.0.1:{busy} (GRPC_PORT): Address already in use",
            ),
            ("70000", "cgan-serve: GRPC_PORT: Input should be less than or equal to 65535"),
        ):
            done = subprocess.run(
                [sys.executable, "-m", "service", "--port", str(free_port())],
                cwd=REPO,
                env={
                    "PATH": "/usr/bin:/bin",
                    "PYTHONPATH": str(REPO),
                    "GRPC_PORT": value,
                    "MODELS_DIR": str(tmp_path),
                },
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode != 0 and done.stderr.strip().splitlines() == [line], done.stderr
