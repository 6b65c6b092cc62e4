"""Soak drill: minutes of mixed load against ``python -m service`` while model versions come and go.

    python -m bench.drills.soak_drill                      # 10 minutes, windows of 60 s
    python -m bench.drills.soak_drill --minutes 1          # the short form
    python -m bench.drills.soak_drill --minutes 0.5 --window 10   # what CI runs (tests/test_soak_drill.py)
    python -m bench.drills.soak_drill --minutes 30 --workers 2 --kill-every 120   # with worker kills

Starts the service on 127.0.0.1 over its own temporary MODELS_DIR (the tests' tiny ONNX model, no
TensorFlow) with small limits (MAX_CONCURRENCY=4, MAX_QUEUE=8, QUEUE_TIMEOUT_SECONDS=5,
SEND_TIMEOUT_SECONDS=2, RELOAD_INTERVAL=0.5) and runs at once, until the time is up:

* ``generate``: 3 clients, ``POST /generate`` (n 1/16/64, png/npy) to the default model, paced;
* ``extra``: 1 client naming the model ``extra``, which the publisher adds and removes (404 while absent);
* ``dataset``: 1 client streaming ``POST /dataset`` archives to the end;
* ``leaver``: raw sockets that send a /generate or /dataset request and hang up at once or after the
  status line (the server must drop their work: counted 499 in /metrics);
* ``slow``: a reader with a 4 KB receive buffer that reads 1 KB per 0.2 s, then gives up;
* ``bad``: malformed JSON, out-of-range fields, oversized and lying bodies (400/413/422 expected);
* ``health``: ``GET /healthz`` every 0.5 s, which must answer within 2 s;
* ``burst``: every 5 s, 60 ``POST /generate`` (n=1024) at once, beyond MAX_CONCURRENCY + MAX_QUEUE (429s);
* ``publisher``: a new ``digits`` version every 3 s (the oldest removed beyond 2), ``extra`` published
  and removed every 5 s;
* RSS of the server sampled every second (the supervisor and its workers);
* ``killer`` (``--kill-every SECONDS``, with ``--workers`` 2 or more): SIGKILLs a random worker of the
  supervisor every N s; the supervisor replaces it (RESTART_DELAY later), and the drill checks that it did.

A request whose connection breaks (a connection error, a reset, an answer cut short; not a timeout) while
a worker kill happened during it is counted apart, as *killed with its worker*: its connection was on the
killed worker, which is what a SIGKILL costs. Such requests must number at most the drill's requests in
flight at that kill (counted per kill); a connection error on a request that no kill overlapped stays
unexpected, so requests started after a kill, which the replacement and the surviving worker serve, must
all be answered as before.

Each answer is *expected* (200; 429/503 with Retry-After under overload; the 4xx a bad body or an absent
model must get) or *unexpected* (anything else, a timeout, a socket error). Prints one table row per
window (requests, expected refusals, unexpected, p50/p99 of 200s, RSS), then the summary line
``soak: requests=... unexpected=... p99_first_ms=... p99_last_ms=... rss_first_mb=... rss_last_mb=...``
(with kills: ``kills: ... killed_with_worker=... in_flight_at_kills=...``), ``rss_slope_mb_per_min=...``
(a linear fit of the windows' mean RSS over the last 20 minutes: the growth rate a leak would show), and
``soak drill: PASSED`` or ``FAILED`` (exit 1): any unexpected answer, a failed health probe, RSS growth
over ``--rss-growth-mb`` from the second window (after warm-up) to the last, a kill that took more
requests than were in flight, a worker not replaced, or a server that does not stop cleanly on SIGTERM.
Everything targets 127.0.0.1 and every loop ends with the deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx  # noqa: E402

from bench.harness import HOST, markdown_table, rss_mb, service_server, verdict  # noqa: E402
from cgan_testing.fakes import build_generator, write_version  # noqa: E402

SERVER_ENV = {
    "MAX_CONCURRENCY": "4",
    "MAX_QUEUE": "8",
    "QUEUE_TIMEOUT_SECONDS": "5",
    "SEND_TIMEOUT_SECONDS": "2",
    "HEADER_TIMEOUT_SECONDS": "5",
    "BODY_TIMEOUT_SECONDS": "5",
    "RELOAD_INTERVAL": "0.5",
    "DATASET_BATCH": "512",
    "ORT_INTRA_OP_THREADS": "1",
    "LOG_LEVEL": "warning",
}
OVERLOAD = {429, 503}
#: A connection that broke rather than timed out: what a request on a SIGKILLed worker sees.
BROKEN = (httpx.NetworkError, httpx.RemoteProtocolError, OSError, asyncio.IncompleteReadError)


@dataclass
class Window:
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    unexpected: int = 0
    killed: int = 0
    latencies: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)


@dataclass
class Soak:
    started: float
    window_s: float
    #: Answers that arrive after the deadline count in the last window, not in a stub window of their own.
    last_window: int
    windows: dict[int, Window] = field(default_factory=lambda: defaultdict(Window))
    problems: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    #: The drill's own requests awaiting an answer (raw sockets included), and all it ever started.
    in_flight: int = 0
    begun: int = 0
    #: Per worker kill: [when the victim was gone (monotonic; infinity while it dies), requests in flight
    #: at the kill or started before the victim was gone, requests killed with that worker].
    kills: list[list[float]] = field(default_factory=list)

    @contextlib.contextmanager
    def request(self):
        """Count one request in flight; yields its start time, for :meth:`error`."""
        self.in_flight += 1
        self.begun += 1
        try:
            yield time.monotonic()
        finally:
            self.in_flight -= 1

    def _killed(self, started: float | None) -> bool:
        """Charge a broken request to the latest kill made while it ran (it started before the victim was
        gone, and broke after the kill), if any."""
        during = [k for k in self.kills if started is not None and k[0] >= started]
        if not during:
            return False
        during[-1][2] += 1
        return True

    def window(self) -> Window:
        index = int((time.monotonic() - self.started) // self.window_s)
        return self.windows[min(index, self.last_window)]

    def record(
        self,
        kind: str,
        status: int | None,
        expected: set[int],
        latency: float | None = None,
        started: float | None = None,
    ) -> None:
        w = self.window()
        w.requests += 1
        w.statuses[status] += 1
        if status is None and self._killed(started):  # the connection closed before a status line
            w.killed += 1
        elif status not in expected:
            w.unexpected += 1
            self.problems[f"{kind}:{status}"] += 1
            if len(self.examples) < 10:
                self.examples.append(f"{kind} got {status}")
        elif status == 200 and latency is not None and kind == "generate":
            w.latencies.append(latency)

    def error(self, kind: str, exc: BaseException, started: float | None = None) -> None:
        w = self.window()
        w.requests += 1
        if isinstance(exc, BROKEN) and not isinstance(exc, TimeoutError) and self._killed(started):
            w.killed += 1
            return
        w.unexpected += 1
        self.problems[f"{kind}:{type(exc).__name__}"] += 1
        if len(self.examples) < 10:
            gone = self.kills[-1][0] if self.kills else None
            since = (
                ""
                if gone is None
                else f" ({time.monotonic() - gone:.2f}s after the last kill's victim was gone)"
            )
            self.examples.append(f"{kind}: {type(exc).__name__}: {exc}{since}")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _retry_after_ok(response: httpx.Response) -> bool:
    return response.status_code not in OVERLOAD or response.headers.get("retry-after", "").isdigit()


async def generate_client(soak: Soak, client: httpx.AsyncClient, deadline: float, seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        body = {
            "label": rng.randrange(10),
            "n": rng.choice([1, 16, 64]),
            "format": rng.choice(["png", "npy"]),
        }
        response = None
        started = time.perf_counter()
        with soak.request() as began:
            try:
                response = await client.post("/generate", json=body)
            except httpx.HTTPError as e:
                soak.error("generate", e, began)
        if response is not None:
            ok = {200, *OVERLOAD} if _retry_after_ok(response) else {200}
            soak.record("generate", response.status_code, ok, time.perf_counter() - started)
        await asyncio.sleep(0.01)


async def extra_client(soak: Soak, client: httpx.AsyncClient, deadline: float) -> None:
    while time.monotonic() < deadline:
        with soak.request() as began:
            try:
                response = await client.post("/generate", json={"label": 1, "model": "extra"})
            except httpx.HTTPError as e:
                soak.error("extra", e, began)
            else:
                soak.record("extra", response.status_code, {200, 404, *OVERLOAD})
        await asyncio.sleep(0.05)


async def dataset_client(soak: Soak, client: httpx.AsyncClient, deadline: float) -> None:
    while time.monotonic() < deadline:
        with soak.request() as began:
            try:
                async with client.stream(
                    "POST", "/dataset", json={"per_label": 100, "format": "npz"}
                ) as response:
                    size = 0
                    async for chunk in response.aiter_raw():
                        size += len(chunk)
                    status = response.status_code if response.status_code != 200 or size > 100_000 else -1
            except httpx.HTTPError as e:
                soak.error("dataset", e, began)
            else:
                soak.record("dataset", status, {200, *OVERLOAD})
        await asyncio.sleep(0.2)


async def _raw(port: int, request: bytes, rcvbuf: int | None = None):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(request)
    await writer.drain()
    return reader, writer


def _post(path: str, body: dict | bytes) -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
    return head.encode() + b"Content-Length: %d\r\n\r\n" % len(data) + data


async def leaver(soak: Soak, port: int, deadline: float, seed: int) -> None:
    """Clients that send real work and leave: at once, or after the status line."""
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        request = rng.choice(
            [_post("/generate", {"label": 3, "n": 256}), _post("/dataset", {"per_label": 2000})]
        )
        with soak.request() as began:
            try:
                reader, writer = await _raw(port, request)
                if rng.random() < 0.5:
                    await asyncio.wait_for(reader.readline(), 10)
                writer.transport.abort()
            except (OSError, TimeoutError) as e:
                soak.error("leaver", e, began)
            else:
                soak.record("leaver", 0, {0})
        await asyncio.sleep(0.1)


async def slow_reader(soak: Soak, port: int, deadline: float) -> None:
    """Reads 1 KB per 0.2 s of a big archive for up to 3 s, then gives up (or the server closes first)."""
    while time.monotonic() < deadline:
        with soak.request() as began:
            try:
                reader, writer = await _raw(port, _post("/dataset", {"per_label": 3000}), rcvbuf=4096)
                status_line = await asyncio.wait_for(reader.readline(), 10)
                status = int(status_line.split()[1]) if status_line else None
                until = time.monotonic() + 3
                while time.monotonic() < until and await reader.read(1024):
                    await asyncio.sleep(0.2)
                writer.transport.abort()
            except (OSError, TimeoutError, ValueError, IndexError) as e:
                soak.error("slow", e, began)
            else:
                soak.record("slow", status, {200, *OVERLOAD}, started=began)
        await asyncio.sleep(0.5)


# The body cap is checked before admission, validation after it: under overload a bad body may get 429/503.
BAD_BODIES = [
    (b"{not json", {422, *OVERLOAD}),
    (json.dumps({"label": 1, "n": 0}).encode(), {422, *OVERLOAD}),
    (json.dumps({"label": "no-such-class"}).encode(), {422, *OVERLOAD}),
    (json.dumps({"label": 1, "n": 10**6}).encode(), {422, *OVERLOAD}),
    # While the limiter is full, a path already routed to /generate is shed with 429 before its body is read.
    (json.dumps({"label": 1, "model": "x" * 40_000}).encode(), {413, 429}),
]


async def bad_client(soak: Soak, client: httpx.AsyncClient, port: int, deadline: float) -> None:
    i = 0
    while time.monotonic() < deadline:
        body, expected = BAD_BODIES[i % len(BAD_BODIES)]
        i += 1
        with soak.request() as began:
            try:
                response = await client.post(
                    "/generate", content=body, headers={"Content-Type": "application/json"}
                )
            except httpx.HTTPError as e:
                soak.error("bad", e, began)
            else:
                soak.record("bad", response.status_code, expected)
        if i % 5 == 0:  # a body shorter than its Content-Length: 408 after BODY_TIMEOUT_SECONDS, or we leave
            with soak.request() as began:
                try:
                    reader, writer = await _raw(port, _post("/generate", b'{"label": 1}')[:-4])
                    writer.transport.abort()
                except OSError as e:
                    soak.error("bad", e, began)
        await asyncio.sleep(0.1)


async def burst(soak: Soak, client: httpx.AsyncClient, deadline: float) -> None:
    """Every 5 s, 60 big requests at once: far more than MAX_CONCURRENCY + MAX_QUEUE, so some get 429."""
    while time.monotonic() < deadline:
        await asyncio.sleep(5)

        async def one() -> None:
            with soak.request() as began:
                try:
                    response = await client.post("/generate", json={"label": 5, "n": 1024, "format": "npy"})
                except httpx.HTTPError as e:
                    soak.error("burst", e, began)
                else:
                    ok = {200, *OVERLOAD} if _retry_after_ok(response) else {200}
                    soak.record("burst", response.status_code, ok)

        await asyncio.gather(*(one() for _ in range(60)))


async def health(soak: Soak, client: httpx.AsyncClient, deadline: float) -> None:
    while time.monotonic() < deadline:
        with soak.request() as began:
            try:
                response = await client.get("/healthz", timeout=2)
            except httpx.HTTPError as e:
                soak.error("health", e, began)
            else:
                soak.record("health", response.status_code, {200})
        await asyncio.sleep(0.5)


async def publisher(soak: Soak, models: Path, deadline: float) -> None:
    """New digits versions (the oldest removed beyond two) and an ``extra`` model that comes and goes."""
    version, tick = 1, 0
    variants = [build_generator(weights_seed=seed) for seed in range(2)]  # versions differ in their weights
    while time.monotonic() < deadline:
        await asyncio.sleep(1)
        tick += 1
        try:
            if tick % 3 == 0:
                version += 1
                await asyncio.to_thread(
                    write_version, models, "digits", version, onnx_bytes=variants[version % 2]
                )
                versions = sorted(int(p.name) for p in (models / "digits").iterdir() if p.name.isdigit())
                for old in versions[:-2]:
                    await asyncio.to_thread(shutil.rmtree, models / "digits" / str(old))
            if tick % 5 == 0:
                if (models / "extra").exists():
                    await asyncio.to_thread(shutil.rmtree, models / "extra")
                else:
                    await asyncio.to_thread(write_version, models, "extra", tick, onnx_bytes=variants[0])
        except OSError as e:
            soak.error("publisher", e)


async def sample_rss(soak: Soak, pid: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):  # a worker that exits between listing /proc and reading it
            soak.window().rss.append(rss_mb(pid))
        await asyncio.sleep(1)


def workers(supervisor: int) -> list[int]:
    """The supervisor's worker pids: its children started by multiprocessing's spawn (not its
    resource tracker)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rpartition(")")[2].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                spawned = b"spawn_main" in f.read()
            if parent == supervisor and spawned:
                pids.append(int(entry))
    return pids


async def killer(soak: Soak, pid: int, count: int, every: float, deadline: float, seed: int) -> None:
    """SIGKILL a random worker every ``every`` s (none in the last ``every`` / 2 s, so the last one is seen
    replaced); before each kill, the previous victim must have been replaced (``count`` workers again)."""
    rng = random.Random(seed)
    while time.monotonic() + every * 1.5 < deadline:
        await asyncio.sleep(every)
        alive = workers(pid)
        if len(alive) != count:
            soak.problems[f"workers:{len(alive)}"] += 1
            soak.examples.append(f"{len(alive)} workers alive {every:.0f}s after a kill, not {count}")
            continue
        victim = rng.choice(alive)
        kill = [math.inf, soak.in_flight, 0]
        soak.kills.append(kill)
        begun = soak.begun
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
        # SIGKILL takes effect a little later: a request sent meanwhile may still land on the victim's
        # sockets, so the kill covers requests started until the process is gone. Not until it is a
        # zombie: its main thread is one before its other threads have exited and its sockets have
        # closed. Until the supervisor has reaped it (it waits on the worker's sentinel, which closes last).
        gone_by = time.monotonic() + 10
        while os.path.exists(f"/proc/{victim}") and time.monotonic() < gone_by:
            await asyncio.sleep(0.002)
        kill[0], kill[1] = time.monotonic(), kill[1] + soak.begun - begun


async def drive(
    soak: Soak, url: str, port: int, pid: int, models: Path, seconds: float, kill: tuple[int, float] | None
) -> None:
    deadline = time.monotonic() + seconds
    # Idle connections expire before the server's 5 s keep-alive does: a burst leaves 60 of them idle for
    # 5 s, and reusing one the server is closing at that very moment is a client-side ReadError.
    limits = httpx.Limits(max_connections=100, keepalive_expiry=2)
    async with httpx.AsyncClient(base_url=url, timeout=15, limits=limits) as client:
        tasks = [generate_client(soak, client, deadline, seed) for seed in range(3)]
        tasks += [
            extra_client(soak, client, deadline),
            dataset_client(soak, client, deadline),
            leaver(soak, port, deadline, 7),
            slow_reader(soak, port, deadline),
            bad_client(soak, client, port, deadline),
            health(soak, client, deadline),
            burst(soak, client, deadline),
            publisher(soak, models, deadline),
            sample_rss(soak, pid, deadline),
        ]
        if kill is not None:
            tasks.append(killer(soak, pid, *kill, deadline, 11))
        await asyncio.gather(*tasks)


def _fmt(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def report(soak: Soak) -> tuple[list[list[str]], dict[str, float | None]]:
    rows = []
    for index in sorted(soak.windows):
        w = soak.windows[index]
        rows.append(
            [
                f"{index * soak.window_s:.0f}-{(index + 1) * soak.window_s:.0f}s",
                str(w.requests),
                str(w.statuses[200]),
                str(w.statuses[429]),
                str(w.statuses[503]),
                str(w.unexpected),
                str(w.killed),
                _fmt(percentile(w.latencies, 0.5), 1000),
                _fmt(percentile(w.latencies, 0.99), 1000),
                _fmt(sum(w.rss) / len(w.rss) if w.rss else None),
            ]
        )
    full = [soak.windows[i] for i in sorted(soak.windows) if soak.windows[i].latencies]
    rss = [soak.windows[i] for i in sorted(soak.windows) if soak.windows[i].rss]
    summary = {
        "requests": sum(w.requests for w in soak.windows.values()),
        "unexpected": sum(w.unexpected for w in soak.windows.values()),
        "killed": sum(w.killed for w in soak.windows.values()),
        "r429": sum(w.statuses[429] for w in soak.windows.values()),
        "r503": sum(w.statuses[503] for w in soak.windows.values()),
        "p99_first_ms": percentile(full[0].latencies, 0.99) * 1000 if full else None,
        "p99_last_ms": percentile(full[-1].latencies, 0.99) * 1000 if full else None,
        "rss_first_mb": sum(rss[0].rss) / len(rss[0].rss) if rss else None,
        "rss_last_mb": sum(rss[-1].rss) / len(rss[-1].rss) if rss else None,
        "rss_slope": rss_slope(soak),
    }
    return rows, summary


def rss_slope(soak: Soak, minutes: float = 20.0) -> float | None:
    """MB per minute: the least-squares line through the windows' mean RSS (at their midpoints) over the
    last ``minutes``, the first window (warm-up) left out; None with fewer than two windows."""
    points = [
        ((i + 0.5) * soak.window_s / 60, sum(w.rss) / len(w.rss))
        for i, w in sorted(soak.windows.items())
        if w.rss and i > 0
    ]
    if points:
        points = [(t, r) for t, r in points if t >= points[-1][0] - minutes]
    if len(points) < 2:
        return None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_r = sum(r for _, r in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (r - mean_r) for t, r in points) / spread


def client_closed(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("cgan_http_requests_total{") and 'status="499"' in line
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=60.0, help="seconds per table row")
    parser.add_argument("--rss-growth-mb", type=float, default=100.0)
    parser.add_argument("--workers", type=int, help="WORKERS (default: the service's, one per core)")
    parser.add_argument(
        "--kill-every",
        type=float,
        metavar="SECONDS",
        help="SIGKILL a random worker this often (--workers >= 2)",
    )
    args = parser.parse_args(argv)
    seconds = args.minutes * 60
    if args.kill_every is not None and (args.workers or 0) < 2:
        parser.error("--kill-every needs --workers 2 or more: the supervisor replaces a worker, not itself")
    if args.kill_every is not None and args.kill_every * 1.5 >= seconds:
        parser.error(f"--kill-every {args.kill_every:g} leaves no kill in {seconds:g} s")
    env = SERVER_ENV | ({"WORKERS": str(args.workers)} if args.workers else {})
    kill = (args.workers, args.kill_every) if args.kill_every is not None else None

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        models = Path(tmp) / "models"
        models.mkdir()
        write_version(models, "digits", 1)
        server = service_server(models, "digits", env=env, name="soak")
        with server:
            server.wait_ready(timeout=60)
            soak = Soak(time.monotonic(), args.window, max(0, math.ceil(seconds / args.window) - 1))
            asyncio.run(drive(soak, server.url, server.port, server.pid, models, seconds, kill))
            closed = client_closed(server.url)
            ready = httpx.get(f"{server.url}/readyz", timeout=5).status_code
            alive = len(workers(server.pid))
            exit_status = server.stop(signal.SIGTERM, timeout=30)

    rows, s = report(soak)
    headers = [
        "window",
        "requests",
        "200",
        "429",
        "503",
        "unexpected",
        "killed",
        "p50 ms",
        "p99 ms",
        "RSS MB",
    ]
    print(markdown_table(headers, rows))
    print(
        f"soak: requests={s['requests']} unexpected={s['unexpected']} 429={s['r429']} 503={s['r503']} "
        f"client_closed_499={closed:.0f} p99_first_ms={_fmt(s['p99_first_ms'])} "
        f"p99_last_ms={_fmt(s['p99_last_ms'])} rss_first_mb={_fmt(s['rss_first_mb'])} "
        f"rss_last_mb={_fmt(s['rss_last_mb'])} rss_slope_mb_per_min={_fmt(s['rss_slope'], digits=2)}"
    )
    failures = []
    if kill is not None:
        over = [k for k in soak.kills if k[2] > k[1]]
        print(
            f"kills: {len(soak.kills)} every {args.kill_every:g}s killed_with_worker={s['killed']} "
            f"in_flight_at_kills={sum(int(k[1]) for k in soak.kills)} workers_at_end={alive}"
        )
        if not soak.kills:
            failures.append("no worker was killed")
        if over:
            failures.append(f"kills that took more requests than were in flight: {over}")
        if alive != args.workers:
            failures.append(f"{alive} workers at the end, not {args.workers}")
    if s["unexpected"] or any(k.startswith("workers:") for k in soak.problems):
        failures.append(f"{s['unexpected']} unexpected answers: {dict(soak.problems)}; e.g. {soak.examples}")
    warmed = [w.rss for _, w in sorted(soak.windows.items()) if w.rss][1:2] or [[s["rss_first_mb"] or 0]]
    growth = (s["rss_last_mb"] or 0) - sum(warmed[0]) / len(warmed[0])
    if growth > args.rss_growth_mb:
        failures.append(f"RSS grew {growth:.0f} MB (limit {args.rss_growth_mb:.0f})")
    if ready != 200:
        failures.append(f"/readyz answered {ready} after the load")
    if exit_status != 0:
        failures.append(f"SIGTERM exit status {exit_status}")
    return verdict("soak drill", failures)


if __name__ == "__main__":
    sys.exit(main())
