"""A real local Ray cluster of separate node processes, for the bulk tests and bench's bulk_scaling.

Each node is ``ray start --block`` in a session of its own, under one fresh ``--temp-dir``. Stopping it
never uses ``ray stop``: that command finds Ray processes by name across the whole machine and would kill
anyone's. Instead each ``ray start --block`` is sent SIGTERM (it stops the processes it started), and then
whatever is left in those sessions, or names our temp dir on its command line, is killed by pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cgan_testing.live_server import free_port

_STARTED = "Ray runtime started"


class _Node:
    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
        self.proc = subprocess.Popen(
            [ray, "start", "--block", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.sid = self.proc.pid
        self.lines: list[str] = []
        self.started = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if _STARTED in line:
                self.started.set()

    def wait_started(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.started.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ray start failed:\n" + "".join(self.lines[-30:]))


class LocalRayCluster:
    """``with LocalRayCluster([1, 1]) as address``: a head and one more node, one CPU each."""

    def __init__(self, cpus_per_node: list[int], start_timeout: float = 90.0) -> None:
        self.cpus_per_node = cpus_per_node
        self.start_timeout = start_timeout
        self.nodes: list[_Node] = []
        # Short and unique: Ray puts unix sockets under it (107-byte path limit); our processes name it.
        self.temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
        self.address = ""

    def __enter__(self) -> str:
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        common = ["--temp-dir", self.temp_dir, "--disable-usage-stats", "--node-ip-address", "127.0.0.1",
                  "--object-store-memory", str(100 << 20)]  # fmt: skip
        try:
            # All nodes start at once (the others wait for the head's GCS): starting Ray's Python helpers
            # is most of the time, and on a busy machine doing it in parallel halves the wait.
            for i, cpus in enumerate(self.cpus_per_node):
                where = ["--head", "--port", str(port), "--include-dashboard", "false"] if i == 0 else []
                where += ["--address", self.address] if i else []
                self.nodes.append(_Node([*where, "--num-cpus", str(cpus), "--num-gpus", "0", *common], env))
            for node in self.nodes:
                node.wait_started(self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self.address

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ours(self) -> list[int]:
        sids = {n.sid for n in self.nodes}
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            session = int(stat.rsplit(")", 1)[1].split()[4])
            # A session id outlives nothing: once its leader is reaped the id may be reused, so a session
            # match counts only for a process that is Ray's too.
            if (session in sids and b"ray" in cmdline) or self.temp_dir.encode() in cmdline:
                found.append(int(entry.name))
        return found

    def stop(self, grace: float = 20.0) -> None:
        for node in reversed(self.nodes):
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for node in reversed(self.nodes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(max(0.1, deadline - time.monotonic()))
        deadline = time.monotonic() + 10
        while (left := self._ours()) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)  # a killed process lingers until its parent reaps it; look again shortly
        for node in self.nodes:
            if node.proc.poll() is None:
                node.proc.kill()
            node.proc.wait(5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
