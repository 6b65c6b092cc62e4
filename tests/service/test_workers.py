"""``python -m service`` with several workers: one port, metrics summed over them, a dead worker replaced,
SIGTERM drains them all, and nothing outlives a killed supervisor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cgan_testing.live_server import REPO, LiveServer

pytestmark = pytest.mark.slow


def workers_of(server: LiveServer) -> list[int]:
    """The supervisor's worker processes (its spawned children, not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    return [
        int(pid)
        for pid in children
        if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    ]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: it only waits for its parent to read its status.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def wait_until(condition, seconds: float = 15, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def metrics_dir_of(server: LiveServer) -> Path:
    """The directory the workers write their samples to, as their environment says (the service's own)."""
    environ = Path(f"/proc/{workers_of(server)[0]}/environ").read_bytes().split(b"\0")
    (shared,) = [
        Path(v.split(b"=", 1)[1].decode()) for v in environ if v.startswith(b"PROMETHEUS_MULTIPROC_DIR=")
    ]
    return shared


def family(url: str, name: str) -> list:
    families = text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=5).text)
    return next(f.samples for f in families if f.name == name)


@pytest.fixture
def server(tmp_path: Path, models_dir: Path):
    (tmp_path / "metrics").mkdir()
    # An earlier run's (or another service's) samples: neither summed into this one's nor deleted.
    (tmp_path / "metrics" / "counter_1.db").write_bytes(b"an earlier run's samples")
    running = LiveServer(
        models_dir,
        tmp_path / "server.log",
        WORKERS="2",
        SHUTDOWN_DRAIN_SECONDS="0.5",
        RELOAD_INTERVAL="1",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    wait_until(lambda: len(workers_of(running)) == 2, what="two workers")
    # /readyz answered by one worker says nothing of the other: wait until both have started serving.
    wait_until(lambda: running.log.read_text().count("Application startup complete") == 2, what="both up")
    yield running
    running.stop()


def _images_made(samples: Path) -> float:
    """cgan_images_generated_total as one worker's own multiprocess file holds it."""
    from prometheus_client.mmap_dict import MmapedDict

    store = MmapedDict(str(samples), read_mode=True)
    try:
        return sum(
            value
            for key, value, _ in store.read_all_values()
            if json.loads(key)[1] == "cgan_images_generated_total"
        )
    finally:
        store.close()


def test_two_workers_serve_one_port_and_every_scrape_counts_both(server: LiveServer, tmp_path: Path) -> None:
    def post(_: int) -> int:
        # A fresh connection each, eight at once, so the kernel hands them to both workers.
        with httpx.Client(base_url=server.url, timeout=10) as one:
            return one.post("/generate", json={"label": 1, "n": 2}).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(post, range(48))) == {200}
    # Each worker writes its samples to the shared directory (files named by pid), and each served some of
    # the requests: a file alone exists from a worker's start, before any traffic, and totals that one worker
    # made would show nothing of how scrapes add the workers up.
    own = metrics_dir_of(server)
    assert own.parent == tmp_path / "metrics"
    served = {pid: _images_made(own / f"counter_{pid}.db") for pid in workers_of(server)}
    assert sum(served.values()) == 96 and all(served.values()), served
    # Whichever worker answers a scrape, it reports the service's totals, not its own.
    for _ in range(8):
        (images,) = family(server.url, "cgan_images_generated")
        assert images.value == 96
        (in_flight,) = family(server.url, "cgan_http_requests_in_flight")
        assert in_flight.value == 1  # the scrape itself, counted once over both workers


def test_keep_alive_connections_opened_at_once_land_on_every_worker(
    server: LiveServer, tmp_path: Path
) -> None:
    # 16 keep-alive connections, opened together and each used for many requests (a load tool's pattern):
    # with one shared listening socket one worker could take most of them and keep their load; with a
    # socket per worker (SO_REUSEPORT) the kernel spreads them over both.
    clients = [httpx.Client(base_url=server.url, timeout=10) for _ in range(16)]
    try:
        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(lambda c: c.get("/healthz").status_code, clients)) == {200}  # all open

            def many(client: httpx.Client) -> set[int]:
                return {client.post("/generate", json={"label": 1, "n": 1}).status_code for _ in range(8)}

            assert set().union(*pool.map(many, clients)) == {200}
    finally:
        for client in clients:
            client.close()
    own = metrics_dir_of(server)
    served = {pid: _images_made(own / f"counter_{pid}.db") for pid in workers_of(server)}
    assert sum(served.values()) == 128, served
    assert min(served.values()) >= 16, f"a worker served at most 2 of 16 connections: {served}"


def test_a_burst_of_short_connections_lands_on_every_worker(server: LiveServer) -> None:
    # The other pattern of issue #30: each request on a connection of its own, many at once (a script with
    # no client session, a health checker, a proxy without keep-alive). Each new connection is hashed to a
    # worker's socket, so both get a share. (One keep-alive connection stays with one worker: a TCP
    # connection belongs to the process that accepted it.)
    def once(_: int) -> int:
        return httpx.post(f"{server.url}/generate", json={"label": 2, "n": 1}, timeout=10).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(once, range(64))) == {200}
    own = metrics_dir_of(server)
    served = {pid: _images_made(own / f"counter_{pid}.db") for pid in workers_of(server)}
    assert sum(served.values()) == 64, served
    assert min(served.values()) >= 8, f"one worker took nearly every connection: {served}"


def test_a_dead_worker_is_replaced(server: LiveServer) -> None:
    first, second = workers_of(server)
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: first not in workers_of(server) and len(workers_of(server)) == 2, what="a new worker")
    assert second in workers_of(server)
    wait_until(lambda: httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200, what="ready")
    # The dead worker's live gauges are gone: readiness is the live workers' minimum, still 1.
    assert [s.value for s in family(server.url, "cgan_ready")] == [1.0]
    assert f"pid {first}) exited with status -9; replacing it" in server.log.read_text()


def test_sigterm_stops_every_worker_and_exits_zero(server: LiveServer) -> None:
    pids = workers_of(server)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(20) == 0
    assert not any(alive(pid) for pid in pids)
    log = server.log.read_text()
    assert log.count("draining for 0.5s") == 2 and "Traceback" not in log
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz", timeout=2)


def test_workers_stop_when_the_supervisor_is_killed(server: LiveServer) -> None:
    pids = workers_of(server)
    server.process.kill()
    server.process.wait(10)
    wait_until(lambda: not any(alive(pid) for pid in pids), what="orphaned workers to stop")
    assert "the supervisor" in server.log.read_text() and "is gone; stopping" in server.log.read_text()


def test_bad_workers_value_is_one_line_and_non_zero() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service", "--workers", "-1"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and done.stderr.strip().splitlines() == [
        "cgan-serve: WORKERS: Input should be greater than or equal to 0"
    ]


def test_the_supervisor_makes_and_removes_the_metrics_directory(tmp_path: Path, models_dir: Path) -> None:
    server = LiveServer(models_dir, tmp_path / "server.log", WORKERS="2")
    try:
        wait_until(lambda: len(workers_of(server)) == 2, what="two workers")
        shared = metrics_dir_of(server)
        assert shared.is_dir() and shared.name.startswith("cgan-metrics-")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(20) == 0
        assert not shared.exists()
    finally:
        server.stop()


def test_sigterm_while_the_workers_start_is_still_a_clean_stop(tmp_path: Path, models_dir: Path) -> None:
    """A pod stopped at once: workers still importing die by the signal itself, which is no failure."""
    from cgan_testing.live_server import free_port

    env = {**os.environ, "PYTHONPATH": str(REPO), "MODELS_DIR": str(models_dir), "BUNDLED_MODELS": "0"}
    env["GRPC_PORT"] = str(free_port())
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp_path / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "--workers", "2", "--port", str(free_port())],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: len(Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()) >= 2
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()
    finally:
        process.kill()
    assert "stopped with status" not in log.read_text()


def _generate_count(url: str) -> float:
    """Successful POST /generate requests, as a scrape of ``url`` sums them."""
    return sum(
        s.value
        for s in family(url, "cgan_http_requests")
        if s.name == "cgan_http_requests_total"
        and s.labels["route"] == "/generate"
        and s.labels["status"] == "200"
    )


def test_services_sharing_a_metrics_directory_keep_to_their_own_files(
    tmp_path: Path, models_dir: Path
) -> None:
    # Two supervisors and a lone process given one PROMETHEUS_MULTIPROC_DIR (a shared /tmp, a copied
    # manifest): none may delete, or count, another's samples, nor touch a file it did not write.
    shared = tmp_path / "metrics"
    shared.mkdir()
    (shared / "notes.db").write_bytes(b"somebody else's")
    env = {"PROMETHEUS_MULTIPROC_DIR": str(shared), "SHUTDOWN_DRAIN_SECONDS": "0"}
    first = LiveServer(models_dir, tmp_path / "first.log", WORKERS="2", **env)
    servers = [first]
    try:
        wait_until(lambda: first.log.read_text().count("Application startup complete") == 2, what="both up")

        def post(_: int) -> int:
            with httpx.Client(base_url=first.url, timeout=10) as one:  # a fresh connection: both workers
                return one.post("/generate", json={"label": 1, "n": 1}).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(post, range(24))) == {200}
        lone = LiveServer(models_dir, tmp_path / "lone.log", WORKERS="1", **env)
        servers.append(lone)
        assert httpx.post(f"{lone.url}/generate", json={"label": 2, "n": 1}, timeout=10).status_code == 200
        second = LiveServer(models_dir, tmp_path / "second.log", WORKERS="2", **env)
        servers.append(second)
        wait_until(lambda: second.log.read_text().count("Application startup complete") == 2, what="both up")

        assert (shared / "notes.db").read_bytes() == b"somebody else's"
        for _ in range(6):  # whichever worker answers, the first service counts its own 24, over both workers
            assert _generate_count(first.url) == 24
            assert _generate_count(second.url) == 0
        assert _generate_count(lone.url) == 1
        for server in servers:
            server.process.send_signal(signal.SIGTERM)
        for server in servers:
            assert server.process.wait(20) == 0, server.log.read_text()
    finally:
        for server in servers:
            server.stop()
    # Each removed the directory it made, and nothing else.
    assert sorted(p.name for p in shared.iterdir()) == ["notes.db"]
