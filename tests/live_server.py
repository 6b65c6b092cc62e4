"""A real ``python -m service`` process on a loopback port, for tests that drive it with real clients
(``tritonclient``, ``cgan_client``). A plain module, like tests/fakes.py: no test imports a test module."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """Started and ready on construction; ``env`` overrides settings (``API_TOKEN`` only when given)."""

    def __init__(self, models_dir: Path, log: Path, **env: str) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        environment = {k: v for k, v in os.environ.items() if k != "API_TOKEN"}
        environment.update(
            {
                "PYTHONPATH": str(REPO),
                "MODELS_DIR": str(models_dir),
                "LOG_LEVEL": "info",
                "SHUTDOWN_DRAIN_SECONDS": "0",
                "SHUTDOWN_GRACE_SECONDS": "2",
                "ORT_INTRA_OP_THREADS": "1",
                "RELOAD_INTERVAL": "0",
                **env,
            }
        )
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO,
            env=environment,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited early:\n{self.log.read_text()}"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server never became ready:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
