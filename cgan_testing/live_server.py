"""A real ``python -m service`` process on a loopback port, for tests that drive it over real sockets with
real clients (httpx, ``tritonclient``, ``cgan_client``, raw sockets)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
#: Inherited settings a test must never pick up from the shell that runs it.
_NOT_INHERITED = ("API_TOKEN", "MODELS_DIR", "BUNDLED_MODELS_DIR")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """Started on construction, and waited for until ``wait_for`` answers 200 (``/readyz``; ``/healthz`` for
    a server that is not meant to become ready) and, for a ready one, its gRPC port accepts connections.
    ``models_dir=None`` leaves MODELS_DIR unset (the default, ``models`` under ``cwd``). ``env`` overrides
    settings; the defaults keep tests quick and deterministic: no bundled models (tests see exactly the
    models they publish), no hot reload, one onnxruntime thread, gRPC on a free port of its own
    (``grpc_port``, ``grpc_host``; GRPC_PORT="0" turns it off)."""

    def __init__(
        self,
        models_dir: Path | None,
        log: Path,
        *,
        cwd: Path = REPO,
        argv: tuple[str, ...] = ("-m", "service"),
        wait_for: str = "/readyz",
        **env: str,
    ) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.grpc_port = int(env.get("GRPC_PORT") or free_port())
        self.grpc_host = f"127.0.0.1:{self.grpc_port}"
        environment = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        environment.update(
            {
                "PYTHONPATH": str(REPO),
                **({"MODELS_DIR": str(models_dir)} if models_dir is not None else {}),
                "LOG_LEVEL": "info",
                "SHUTDOWN_DRAIN_SECONDS": "0",
                "SHUTDOWN_GRACE_SECONDS": "2",
                "ORT_INTRA_OP_THREADS": "1",
                "RELOAD_INTERVAL": "0",
                "BUNDLED_MODELS": "0",
                "GRPC_PORT": str(self.grpc_port),
                **env,
            }
        )
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, *argv, "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=cwd,
            env=environment,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self._wait(wait_for)

    def _wait(self, path: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited early:\n{self.log.read_text()}"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}{path}", timeout=1).status_code == 200 and self._grpc_listens(path):
                    return
            time.sleep(0.1)
        raise AssertionError(f"server never answered 200 on {path}:\n{self.log.read_text()}")

    def _grpc_listens(self, path: str) -> bool:
        """gRPC starts just after the lifespan (the models) is up: a ready server is waited for until it
        accepts there too."""
        if path != "/readyz" or not self.grpc_port:
            return True
        try:
            socket.create_connection(("127.0.0.1", self.grpc_port), timeout=1).close()
        except OSError:
            return False
        return True

    def connect(self, timeout: float = 10) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
