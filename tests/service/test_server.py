"""The real thing: ``python -m service`` on a loopback port, spoken to over HTTP, stopped with SIGTERM."""

from __future__ import annotations

import io
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from cgan_testing.live_server import LiveServer

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def Server(models_dir: Path | None, log: Path, cwd: Path = REPO, **env: str) -> LiveServer:  # noqa: N802
    """This module's servers drain for half a second and reload every 2 s, like a deployment."""
    return LiveServer(
        models_dir,
        log,
        cwd=cwd,
        **{"SHUTDOWN_DRAIN_SECONDS": "0.5", "SHUTDOWN_GRACE_SECONDS": "10", "RELOAD_INTERVAL": "2", **env},
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, publish, generator_bytes: bytes) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("server") / "models"
    root.mkdir()
    publish(root, "digits", 1, onnx_bytes=generator_bytes)
    running = Server(root, root.parent / "server.log", DATASET_BATCH="64")
    yield running
    running.stop()


def _images_generated(url: str) -> float:
    families = text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
    return next(s.value for f in families if f.name == "cgan_images_generated" for s in f.samples)


def test_generate_over_http(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        png = client.post("/generate", json={"label": 9, "n": 16, "seed": 1})
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(png.content)).size == (122, 122)
        assert png.headers["x-model"] == "digits" and png.headers["x-seed"] == "1"
        assert "server" not in png.headers  # no software banner
        assert client.get("/generate", params={"label": "9", "n": 16, "seed": 1}).content == png.content

        npy = client.post("/generate", json={"label": "3", "n": 5, "seed": 2, "format": "npy"})
        assert np.load(io.BytesIO(npy.content)).shape == (5, 28, 28)

        bad = client.post("/generate", json={"label": 1, "n": 0})
        assert bad.status_code == 422 and bad.json()["field"] == "n"
        assert client.post("/generate", content=b"x" * 100_000).status_code == 413
        assert client.get("/readyz").json()["models"] == {"digits": 1}


def test_disconnect_mid_stream_stops_generation(server: LiveServer) -> None:
    before = _images_generated(server.url)
    total = 10 * 5000
    with (
        httpx.Client(base_url=server.url, timeout=10) as client,
        client.stream("POST", "/dataset", json={"per_label": 5000, "seed": 0}) as response,
    ):
        assert response.status_code == 200
        next(response.iter_raw())
    # The client hung up after one chunk; generation must stop well short of the whole dataset.
    time.sleep(1.0)
    made = _images_generated(server.url) - before
    time.sleep(0.5)
    assert _images_generated(server.url) - before == made
    assert made < total / 4


def test_sigterm_drains_finishes_in_flight_and_exits_zero(tmp_path: Path, models_dir: Path) -> None:
    server = Server(models_dir, tmp_path / "server.log", SHUTDOWN_DRAIN_SECONDS="3")
    try:
        # A small, fixed receive buffer (no autotuning) and a 15 MB response: the server cannot finish
        # writing until we read, so the response stays in flight through the whole shutdown.
        transport = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)])
        client = httpx.Client(base_url=server.url, timeout=10, transport=transport)
        stream = client.stream("POST", "/dataset", json={"per_label": 2000, "seed": 7})
        response = stream.__enter__()
        assert response.status_code == 200
        raw = response.iter_raw()
        chunks = [next(raw)]

        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while (ready := httpx.get(f"{server.url}/readyz", timeout=2)).status_code == 200:
            assert time.monotonic() < deadline, "never turned not-ready"
            time.sleep(0.05)
        assert ready.status_code == 503 and ready.json()["reason"] == "shutting down"
        # Still draining: new requests are served, not refused.
        assert httpx.post(f"{server.url}/generate", json={"label": 1, "n": 1}, timeout=5).status_code == 200
        # Then the listener closes while our response is still unread, and it must still arrive whole.
        # (A connection accepted just as the listener closes is dropped unanswered or reset: that counts too.)
        with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError)):  # noqa: PT012
            while time.monotonic() < deadline + 5:
                httpx.get(f"{server.url}/healthz", timeout=2)
                time.sleep(0.05)
        assert server.process.poll() is None

        chunks.extend(raw)
        stream.__exit__(None, None, None)
        client.close()
        data = np.load(io.BytesIO(b"".join(chunks)))
        assert data["x"].shape == (20_000, 28, 28) and np.bincount(data["y"]).tolist() == [2000] * 10

        assert server.process.wait(20) == 0
        log = server.log.read_text()
        assert "draining" in log and "Traceback" not in log
    finally:
        server.stop()


def test_a_clean_checkout_serves_the_bundled_model(tmp_path: Path) -> None:
    """No MODELS_DIR and no ./models: ``python -m service`` answers from the model shipped in the package."""
    server = Server(None, tmp_path / "server.log", cwd=tmp_path, BUNDLED_MODELS="1")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            png = client.post("/generate", json={"label": 9, "n": 16})
            assert png.status_code == 200 and png.headers["content-type"] == "image/png"
            assert Image.open(io.BytesIO(png.content)).size == (122, 122)
            listed = client.get("/v1/models").json()
            # Both bundled models serve; the digits one is the default.
            assert {m["name"] for m in listed["models"]} == {"mnist-5k-cgan-conv", "fashion-mnist-cgan-conv"}
            (model,) = [m for m in listed["models"] if m["default"]]
            assert (model["name"], model["source"], listed["default"]) == (
                png.headers["x-model"],
                "bundled",
                "mnist-5k-cgan-conv",
            )
            assert model["card"]["quality"] is not None and model["card"]["provenance"]["command"]
    finally:
        server.stop()
    log = (tmp_path / "server.log").read_text()
    assert f"loaded model {model['name']} v{model['version']} (bundled)" in log


def test_the_signal_handler_takes_no_lock(tmp_path: Path) -> None:
    """SIGTERM runs as a handler between two bytecodes of whatever the main thread was doing, perhaps
    inside a metric's lock; a handler that took that lock again would hang the process for good."""
    import asyncio
    import threading

    from service.config import Settings
    from service.server import build_server

    server = build_server(Settings(models_dir=tmp_path, bundled_models=False), "127.0.0.1", 0)
    ready = server.runtime.metrics.ready
    lock = ready._value._lock  # prometheus_client's per-value mutex (not reentrant)

    def signal_inside_the_lock() -> None:
        with lock:
            server.handle_exit(signal.SIGTERM, None)

    handler = threading.Thread(target=signal_inside_the_lock, daemon=True)
    handler.start()
    handler.join(5)
    assert not handler.is_alive(), "the signal handler waited for a lock its own thread holds"
    assert server.runtime.readiness() == (False, "shutting down")
    # The gauge follows on the next tick, outside the handler.
    ready.set(1)
    asyncio.run(server.on_tick(1))
    assert ready._value.get() == 0
