"""Shared plumbing for the HTTP benchmarks and drills: servers in their own process group, a /proc
sampler for RSS and CPU, a wrk runner whose Lua ``done()`` hook reports percentiles and status codes,
the cached benchmark model, and markdown tables.

Everything here targets 127.0.0.1 only; every server started is killed by :meth:`Server.stop`
(also on exceptions, via ``with``).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
CACHE = Path(os.environ.get("BENCH_CACHE", "/tmp/bench"))
WRK_LUA = REPO / "bench" / "wrk_report.lua"
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

#: The trainer command that makes the benchmark model (about a minute on a laptop CPU).
TRAIN_ARGS = (
    "train --dataset mnist-5k --variant cgan --arch dense --steps 200 --name bench"
    " --out {out} --work-dir {work} --quiet"
)


# ---------------------------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def taskset(cpus: str | None) -> list[str]:
    """``taskset -c CPUS`` as an argv prefix, or nothing."""
    if not cpus:
        return []
    if shutil.which("taskset") is None:
        raise SystemExit("taskset is not installed; drop the --*-cpus option")
    return ["taskset", "-c", cpus]


@dataclass
class Server:
    """A server process on 127.0.0.1:``port`` in its own session (process group), logging to a file."""

    name: str
    argv: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    proc: subprocess.Popen | None = None
    started_at: float = 0.0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def grpc_port(self) -> int | None:
        """The service's GRPC_PORT (None for a server without gRPC, or with it off)."""
        return int(self.env["GRPC_PORT"]) if self.env.get("GRPC_PORT", "0") != "0" else None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Server:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.log_path = self.log_path or CACHE / "logs" / f"{self.name}-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.started_at = time.perf_counter()
        # With a taskset prefix, exec replaces taskset, so the pid is still the server's own.
        self.proc = subprocess.Popen(
            self.argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return self

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(
        self, path: str = "/readyz", timeout: float = 120.0, interval: float = 0.01
    ) -> dict[str, float]:
        """Poll ``path`` every ``interval`` s; seconds from :meth:`start` to the first answer and to 200."""
        import httpx

        assert self.proc is not None
        listening = None
        deadline = time.perf_counter() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.proc.returncode} before ready:\n{self.log_tail()}"
                    )
                try:
                    status = client.get(self.url + path).status_code
                except httpx.HTTPError:
                    status = None
                now = time.perf_counter()
                if status is not None and listening is None:
                    listening = now - self.started_at
                if status == 200:
                    return {
                        "listening_s": listening or now - self.started_at,
                        "ready_s": now - self.started_at,
                    }
                time.sleep(interval)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Signal the whole process group, wait, then SIGKILL it; the server's exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        # Anything the server left in its group goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def __enter__(self) -> Server:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def service_server(
    models_dir: Path,
    default_model: str | None,
    port: int | None = None,
    env: dict[str, str] | None = None,
    cpus: str | None = None,
    name: str = "service",
) -> Server:
    """``python -m service`` exactly as deployed (uvloop, httptools, WORKERS from ``env`` or the default), on
    loopback; gRPC on a free port of its own (``Server.grpc_port``; GRPC_PORT in ``env`` overrides it)."""
    port = port or free_port()
    # The benchmarked model only: the bundled default would add its load time and memory to the figures.
    settings = {
        "MODELS_DIR": str(models_dir),
        "SHUTDOWN_DRAIN_SECONDS": "0",
        "BUNDLED_MODELS": "0",
        "GRPC_PORT": str(free_port()),
    }
    if default_model:
        settings["DEFAULT_MODEL"] = default_model
    settings.update(env or {})
    argv = [*taskset(cpus), sys.executable, "-m", "service", "--host", HOST, "--port", str(port)]
    return Server(name, argv, port, settings)


def module_server(
    module: str, name: str, env: dict[str, str] | None = None, cpus: str | None = None
) -> Server:
    """``python -m <module> --host 127.0.0.1 --port P`` (the floor and the naive peer)."""
    port = free_port()
    argv = [*taskset(cpus), sys.executable, "-m", module, "--host", HOST, "--port", str(port)]
    return Server(name, argv, port, dict(env or {}))


def preflight(server: Server, body: str, media_type: str) -> None:
    """One request before the load: a broken server or body must fail loudly, not fill a table with 4xx."""
    import httpx

    response = httpx.post(
        server.url + "/generate", content=body, headers={"Content-Type": "application/json"}, timeout=60
    )
    got = response.headers.get("content-type", "")
    if response.status_code != 200 or not got.startswith(media_type):
        raise RuntimeError(
            f"{server.name}: POST /generate {body} -> {response.status_code} {got}: {response.text[:300]}"
        )


def in_flight(server: Server) -> float | None:
    """The service's ``cgan_http_requests_in_flight`` gauge (this request included), None without /metrics."""
    import httpx

    try:
        response = httpx.get(server.url + "/metrics", timeout=5)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    for line in response.text.splitlines():
        if line.startswith("cgan_http_requests_in_flight "):
            return float(line.rsplit(" ", 1)[1])
    return None


def settle(server: Server, timeout: float = 30.0) -> float:
    """Wait until the server has finished what the last run left behind; seconds waited.

    wrk closes its connections at the end of a row, but requests already queued are still generated
    (nothing cancels them on disconnect), and they would hold MAX_QUEUE slots into the next row.
    Servers without the service's in-flight gauge get a short pause.
    """
    start = time.perf_counter()
    if in_flight(server) is None:
        time.sleep(0.3)
        return time.perf_counter() - start
    while time.perf_counter() - start < timeout:
        value = in_flight(server)
        if value is None or value <= 1:
            break
        time.sleep(0.05)
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------- /proc


def tree(pid: int) -> list[tuple[float, float]]:
    """``(cpu seconds, RSS MB)`` of ``pid`` and every process below it: a server's workers (ours run in
    process groups of their own, so the tree, not the group, is the server)."""
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as f:
                stats[int(entry)] = f.read().rpartition(")")[2].split()
    if pid not in stats:
        raise ProcessLookupError(pid)
    members, grew = {pid}, True
    while grew:  # field 4 of stat(5) is the parent pid
        below = {p for p, fields in stats.items() if int(fields[1]) in members}
        grew = not below <= members
        members |= below
    return [
        ((int(f[11]) + int(f[12])) / CLK_TCK, int(f[21]) * PAGE_KB / 1024)  # utime+stime, rss pages
        for p, f in stats.items()
        if p in members
    ]


def rss_mb(pid: int) -> float:
    """Resident memory of the server ``pid`` with its workers."""
    return sum(rss for _, rss in tree(pid))


def cpu_seconds(pid: int) -> float:
    """utime + stime of the server ``pid`` with its workers (all their threads), in seconds; a worker that
    exited drops out of the sum (none do while a measurement runs)."""
    return sum(cpu for cpu, _ in tree(pid))


class ProcSampler:
    """Samples the RSS of a server and its workers every ``interval`` s in a thread; CPU% over the sampled
    span (100 = one core busy)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.rss: list[float] = []
        #: The largest single process seen (a worker, or the server when it has none).
        self.rss_process_max = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._cpu0 = self._t0 = 0.0
        self.cpu_percent = 0.0
        self.wall = 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self._sample()
            self._stop.wait(self.interval)

    def _sample(self) -> None:
        sizes = [rss for _, rss in tree(self.pid)]
        self.rss.append(sum(sizes))
        self.rss_process_max = max(self.rss_process_max, *sizes)

    def __enter__(self) -> ProcSampler:
        self._cpu0, self._t0 = cpu_seconds(self.pid), time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.wall = time.perf_counter() - self._t0
        with contextlib.suppress(OSError):
            self.cpu_percent = 100.0 * (cpu_seconds(self.pid) - self._cpu0) / max(self.wall, 1e-9)
            self._sample()

    @property
    def rss_max(self) -> float:
        return max(self.rss, default=0.0)

    @property
    def rss_first(self) -> float:
        return self.rss[0] if self.rss else 0.0


# ---------------------------------------------------------------------------------------------- wrk


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    url: str,
    *,
    body: str | None = None,
    bodies: Sequence[str] = (),
    duration: float = 10.0,
    connections: int = 32,
    threads: int = 1,
    timeout: float = 10.0,
    cpus: str | None = None,
) -> dict:
    """One wrk run; returns the Lua report plus derived ``rps``/``ok``/``non2xx``/``p*_ms`` fields.

    wrk stops by itself after ``duration``; the subprocess is killed if it overruns by 30 s.
    """
    if not have_wrk():
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    seconds = max(1, round(duration))
    argv = [
        *taskset(cpus),
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={max(1, round(timeout))}s",
        "-s",
        str(WRK_LUA),
        url,
    ]
    env = {**os.environ, "WRK_BODY": body or "", "WRK_BODIES": "\n".join(bodies)}
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 30, check=False)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    report = json.loads(line.removeprefix("WRK_JSON "))
    codes = {int(k): v for k, v in report["codes"].items()}
    wall = report["duration_us"] / 1e6
    ok = sum(v for k, v in codes.items() if 200 <= k < 300)
    lat = report["latency_us"]
    report.update(
        codes=codes,
        seconds=wall,
        ok=ok,
        non2xx=sum(v for k, v in codes.items() if not 200 <= k < 300),
        timeouts=report["errors"]["timeout"],
        socket_errors=sum(report["errors"][k] for k in ("connect", "read", "write")),
        rps=ok / wall if wall else 0.0,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
    )
    return report


def have_h2load() -> bool:
    return shutil.which("h2load") is not None


def grpc_frame(message: bytes) -> bytes:
    """One gRPC message on the wire: not compressed, its length (4 bytes, big-endian), the protobuf bytes."""
    return b"\0" + len(message).to_bytes(4, "big") + message


def run_h2load(
    url: str,
    body: bytes,
    *,
    headers: Sequence[str] = (),
    duration: float = 10.0,
    connections: int = 32,
    h1: bool = False,
    cpus: str | None = None,
) -> dict:
    """One h2load run (nghttp2): ``connections`` clients, one request in flight each, POSTing ``body`` for
    ``duration`` s over HTTP/2 without TLS (h2c: what gRPC speaks here), or HTTP/1.1 with ``h1``. The same
    fields as :func:`run_wrk`'s report (``rps``, ``p50_ms``, ``p99_ms``, ``non2xx``, ``timeouts``), the
    percentiles from h2load's per-request log. A gRPC error still travels as HTTP 200 (its status is in the
    trailers): check those apart (the service counts them in ``cgan_http_requests_total``)."""
    if not have_h2load():
        raise SystemExit("h2load is not installed (apt-get install -y nghttp2-client)")
    seconds = max(1, round(duration))
    work = CACHE / "h2load"
    work.mkdir(parents=True, exist_ok=True)
    data, log = work / f"body-{os.getpid()}.bin", work / f"log-{os.getpid()}.tsv"
    data.write_bytes(body)
    log.unlink(missing_ok=True)
    argv = [*taskset(cpus), "h2load", f"-c{connections}", "-m1", f"-D{seconds}", "-d", str(data)]
    argv += [f"--log-file={log}", *(["--h1"] if h1 else [])]
    for header in headers:
        argv += ["-H", header]
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=seconds + 60, check=False)
    if out.returncode != 0 or "requests:" not in out.stdout:
        raise RuntimeError(f"h2load failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    statuses, micros = [], []
    for line in log.read_text().splitlines():
        _, status, took = line.split("\t")[:3]
        statuses.append(int(status))
        micros.append(int(took))
    micros.sort()
    ok = sum(200 <= s < 300 for s in statuses)
    counts = re.search(r"requests: \d+ total.* (\d+) failed, (\d+) errored, (\d+) timeout", out.stdout)
    failed = sum(int(x) for x in counts.groups()[1:]) if counts else 0

    def percentile(q: float) -> float:
        return micros[int(q * (len(micros) - 1))] / 1000 if micros else 0.0

    return {
        "tool": "h2load --h1" if h1 else "h2load (h2c)",
        "ok": ok,
        "seconds": float(seconds),
        "rps": ok / seconds,
        "non2xx": len(statuses) - ok,
        "timeouts": failed,
        "socket_errors": 0,
        "p50_ms": percentile(0.5),
        "p90_ms": percentile(0.9),
        "p99_ms": percentile(0.99),
        "max_ms": percentile(1.0),
    }


# ---------------------------------------------------------------------------------------------- model


def _complete_versions(model_root: Path) -> list[Path]:
    import cgan_contract as contract

    return [
        p
        for _, p in contract.version_dirs(model_root)
        if (p / "model.onnx").is_file() and (p / "model.json").is_file()
    ]


def bench_model() -> tuple[Path, str]:
    """A served-models dir holding only the trained ``bench`` model; trains it once (cached in CACHE).

    The trainer writes ``CACHE/models/bench/<v>`` and its run to ``CACHE/runs/bench``; the service is
    pointed at ``CACHE/serve`` (a symlink to that model only), so other models in ``CACHE/models`` do
    not add to the service's memory or startup.
    """
    model_root = CACHE / "models" / "bench"
    if not _complete_versions(model_root):
        argv = [
            sys.executable,
            "-m",
            "trainer",
            *TRAIN_ARGS.format(out=CACHE / "models", work=CACHE / "runs").split(),
        ]
        print(f"# no cached model; training one: {' '.join(argv[1:])}", file=sys.stderr, flush=True)
        subprocess.run(
            argv, cwd=REPO, check=True, timeout=1800, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        )
    serve = CACHE / "serve"
    serve.mkdir(parents=True, exist_ok=True)
    link = serve / "bench"
    if not link.is_symlink() or link.resolve() != model_root.resolve():
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(model_root.resolve(), target_is_directory=True)
    return serve, "bench"


def resolve_models(models_dir: str | None, model: str | None) -> tuple[Path, str, Path]:
    """``(models_dir, model name, newest version dir)``; trains the default model if needed."""
    if models_dir is None:
        root, name = bench_model()
    else:
        root = Path(models_dir).resolve()
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and _complete_versions(p))
        if model is None:
            if len(names) != 1:
                raise SystemExit(f"{root} holds models {names}; pick one with --model")
            model = names[0]
        name = model
    versions = _complete_versions(root / name)
    if not versions:
        raise SystemExit(f"no complete version of model {name!r} under {root}")
    return root, name, versions[-1]


def fake_models_dir(root: Path | None = None) -> tuple[Path, str]:
    """A MODELS_DIR with the service tests' tiny contract-conforming ONNX model (no TensorFlow needed)."""
    from cgan_testing.fakes import write_version

    root = root or CACHE / "fake-models"
    if not _complete_versions(root / "digits"):
        shutil.rmtree(root / "digits", ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        write_version(root, "digits", 1)
    return root, "digits"


# ---------------------------------------------------------------------------------------------- output


def markdown_table(
    headers: Sequence[str], rows: Iterator[Sequence[object]] | Sequence[Sequence[object]]
) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def machine() -> dict[str, object]:
    info: dict[str, object] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus_online": os.cpu_count(),
        "cpus_affinity": len(os.sched_getaffinity(0)),
        "loadavg_at_start": os.getloadavg(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as f:
        info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
        )
        info["git_head"] = rev.stdout.strip()
    return info


def in_process(models_dir: Path, name: str, threads: int = 0):
    """A :class:`service.runtime.Runtime` with ``name`` (and its siblings in ``models_dir``) loaded on
    ``threads`` onnxruntime threads (0: the service's default) and not started: no batcher, no watcher. The
    data plane in this process, what the benchmarks' raw rows call."""
    from service.config import Settings
    from service.runtime import Runtime

    settings = Settings(
        models_dir=models_dir, default_model=name, bundled_models=False, ort_intra_op_threads=threads
    )
    runtime = Runtime(settings)
    runtime.registry.scan()
    return runtime


def verdict(drill: str, failures: list[str]) -> int:
    """A drill's last lines: each failure, then ``<drill>: PASSED`` or ``FAILED``; its exit status."""
    for failure in failures:
        print(f"FAIL: {failure}")
    print(f"{drill}: " + ("FAILED" if failures else "PASSED"))
    return 1 if failures else 0


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path
