"""Connection-level limits of ``python -m service`` on a loopback port (issue #17, items 1-3): the header cap,
the header/body/send timeouts, a path prefix, and a model read that would hang. Raw sockets where HTTP
clients would hide what the server does; every socket has a timeout and only 127.0.0.1 is used."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import cgan_contract as contract
from cgan_testing.live_server import LiveServer

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture
def serve(tmp_path: Path, models_dir: Path) -> Iterator:
    started: list[LiveServer] = []

    def start(argv: tuple[str, ...] = ("-m", "service"), **env: str) -> LiveServer:
        # /healthz, not /readyz: some of these servers are meant to be stuck before a model is ready.
        settings = {"SHUTDOWN_DRAIN_SECONDS": "0.2", "RELOAD_INTERVAL": "0.2", **env}
        log = tmp_path / f"server-{len(started)}.log"
        started.append(LiveServer(models_dir, log, argv=argv, wait_for="/healthz", **settings))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def _read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    data = b""
    sock.settimeout(limit)
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data, time.monotonic() - started


def test_oversized_headers_get_431(serve) -> None:
    server = serve(MAX_HEADER_BYTES="8192")
    with server.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
        data, _ = _read_until_closed(sock, 10)
    assert data.startswith(b"HTTP/1.1 431"), data[:200]
    with server.connect() as sock:  # a normal request is still fine
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Ok: " + b"a" * 4000 + b"\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")


def test_partial_headers_and_idle_connections_are_closed(serve) -> None:
    server = serve(HEADER_TIMEOUT_SECONDS="0.5")
    with server.connect() as idle, server.connect() as partial:
        partial.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        _, idle_for = _read_until_closed(idle, 10)
        data, partial_for = _read_until_closed(partial, 10)
    assert idle_for < 5 and partial_for < 5
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:200]


def test_partial_body_times_out_with_408(serve) -> None:
    server = serve(BODY_TIMEOUT_SECONDS="0.5")
    with server.connect() as sock:
        sock.sendall(
            b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"label"'
        )
        data, took = _read_until_closed(sock, 10)
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert took < 5


def test_dataset_clients_that_do_not_read_lose_their_slots(serve) -> None:
    server = serve(MAX_CONCURRENCY="2", MAX_QUEUE="4", SEND_TIMEOUT_SECONDS="1", DATASET_BATCH="1024")
    body = json.dumps({"per_label": 5000, "seed": 0}).encode()
    request = (
        b"POST /dataset HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    )
    sockets = []
    try:
        for _ in range(2):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(request % len(body) + body)
            sockets.append(sock)  # and never read
        time.sleep(0.5)  # let both streams take their slots and fill the socket buffers
        started = time.monotonic()
        response = httpx.post(f"{server.url}/generate", json={"label": 1}, timeout=15)
        assert response.status_code == 200
        assert time.monotonic() - started < 10
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize(
    "argv",
    [("-m", "service"), ("-m", "uvicorn", "service.app:app", "--root-path", "/api")],
    ids=["cgan-serve", "uvicorn"],
)
def test_guard_holds_behind_a_path_prefix(serve, argv: tuple[str, ...]) -> None:
    # Behind a proxy that strips /api, the server sees /generate with root_path /api (the repro).
    server = serve(argv, ROOT_PATH="/api", API_TOKEN="prefix-token", MAX_BODY_BYTES="1024")
    for path in ("/generate", "/dataset", "/generate?label=1"):
        response = httpx.request("GET" if "?" in path else "POST", server.url + path, json={"label": 1})
        assert response.status_code == 401, (path, response.status_code)
    # Sent with the prefix (no proxy in between): not found, never served.
    assert httpx.post(server.url + "/api/generate", json={"label": 1}, timeout=10).status_code in (401, 404)
    auth = {"Authorization": "Bearer prefix-token"}
    big = httpx.post(server.url + "/generate", content=b"x" * 200_000, headers=auth, timeout=10)
    assert big.status_code == 413
    ok = httpx.post(server.url + "/generate", json={"label": 1}, headers=auth, timeout=10)
    assert ok.status_code == 200
    assert httpx.get(server.url + "/openapi.json", timeout=10).json()["servers"] == [{"url": "/api"}]


def test_hung_model_read_blocks_no_other_model_and_sigterm_still_works(
    serve, models_dir: Path, publish
) -> None:
    server = serve()
    stuck = publish(models_dir, "aaa", 1, atomic=False)
    (stuck / contract.MODEL_FILE).unlink()
    os.mkfifo(stuck / contract.MODEL_FILE)  # open() on it blocks until a writer comes: a hung read
    publish(models_dir, "digits", 2)
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.url}/readyz", timeout=2).json()["models"].get("digits") != 2:
        assert time.monotonic() < deadline, "digits v2 never loaded behind the hung read"
        time.sleep(0.1)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(10) == 0
