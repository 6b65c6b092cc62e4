"""Overload drill: hundreds of concurrent ``POST /generate`` against small limits, health polled throughout.

    python -m bench.drills.overload_drill                            # 10 s, 400 connections, the bench model
    python -m bench.drills.overload_drill --duration 3 --fake-model  # CI short form: tiny ONNX model, no TF
    python -m bench.drills.overload_drill --models-dir DIR --model NAME --client httpx --connections 300

Starts ``python -m service`` on 127.0.0.1 with MAX_CONCURRENCY=2 and MAX_QUEUE=8 (``--max-concurrency``,
``--max-queue``), drives it with wrk (``-t1 -c400``, bodies rotating n=16 png / n=64 png / n=256 npy) or
with an asyncio httpx client (``--client httpx``; ``auto`` picks wrk when installed), and polls
``/healthz`` every 100 ms in parallel. Then checks:

* every response is 200 or 429, no timeouts or socket errors, and every 429 carries ``Retry-After``;
* the load did overload the service (some 429s) and it still served some 200s;
* ``/healthz`` answered 200 within ``--health-timeout`` every time;
* server RSS stayed under ``--rss-limit-mb`` (400) and grew less than ``--rss-growth-mb`` (100) over its
  warmed baseline;
* afterwards: the backlog drains within 10 s (``/metrics`` in-flight gauge), a normal request gets a PNG,
  ``/readyz`` is 200;
* SIGTERM stops it with exit status 0.

Prints the counts line (``counts: 200=... 429=... other=... timeouts=...``) and a table of checks; exits
1 when any check fails. Importable: :func:`drill` returns a :class:`DrillResult`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.harness import (  # noqa: E402
    ProcSampler,
    fake_models_dir,
    have_wrk,
    in_flight,
    markdown_table,
    resolve_models,
    rss_mb,
    run_wrk,
    service_server,
    settle,
)

BODIES = [
    json.dumps({"label": 9, "n": 16, "format": "png"}),
    json.dumps({"label": 3, "n": 64, "format": "png"}),
    json.dumps({"label": 7, "n": 256, "format": "npy"}),
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class DrillResult:
    client: str
    requests: int = 0
    codes: dict[int, int] = field(default_factory=dict)
    timeouts: int = 0
    socket_errors: int = 0
    no_retry_after: int = 0
    health_polls: int = 0
    health_failures: list[str] = field(default_factory=list)
    health_max_ms: float = 0.0
    rss_baseline_mb: float = 0.0
    rss_max_mb: float = 0.0
    cpu_percent: float = 0.0
    load_seconds: float = 0.0
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return self.codes.get(200, 0)

    @property
    def rejected(self) -> int:
        return self.codes.get(429, 0)

    @property
    def other(self) -> int:
        return sum(v for k, v in self.codes.items() if k not in (200, 429))

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)

    def counts_line(self) -> str:
        others = ", ".join(f"{k}={v}" for k, v in sorted(self.codes.items()) if k not in (200, 429))
        return (
            f"counts: 200={self.ok} 429={self.rejected} other={self.other}"
            f"{f' ({others})' if others else ''} timeouts={self.timeouts} socket_errors={self.socket_errors}"
            f" requests={self.requests} in {self.load_seconds:.1f}s via {self.client}"
        )

    @property
    def goodput(self) -> float:
        """200 responses per second of load."""
        return self.ok / self.load_seconds if self.load_seconds else 0.0

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append((name, ok, detail))


class HealthPoller(threading.Thread):
    """GET /healthz every ``interval`` s until stopped; records failures (non-200, errors, slow answers)."""

    def __init__(self, url: str, interval: float, timeout: float) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.interval = interval
        self.timeout = timeout
        self.polls = 0
        self.failures: list[str] = []
        self.max_ms = 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout) as client:
            while not self._halt.is_set():
                t = time.perf_counter()
                try:
                    status = client.get(self.url).status_code
                    if status != 200:
                        self.failures.append(f"status {status}")
                except httpx.HTTPError as e:
                    self.failures.append(f"{type(e).__name__} after {time.perf_counter() - t:.2f}s")
                elapsed = time.perf_counter() - t
                self.max_ms = max(self.max_ms, elapsed * 1e3)
                self.polls += 1
                self._halt.wait(max(0.0, self.interval - elapsed))

    def stop(self) -> None:
        self._halt.set()
        self.join(self.timeout + 5)


async def _httpx_load(
    url: str, duration: float, connections: int, timeout: float, max_requests: int
) -> tuple[Counter, int, int, int, int]:
    """``connections`` tasks posting in a loop until ``duration`` s or ``max_requests`` have gone by."""
    import httpx

    codes: Counter = Counter()
    state = {"sent": 0, "timeouts": 0, "errors": 0, "no_retry_after": 0}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout)) as client:

        async def worker(i: int) -> None:
            while loop.time() < deadline and state["sent"] < max_requests:
                state["sent"] += 1
                try:
                    response = await client.post(
                        url, content=BODIES[(i + state["sent"]) % len(BODIES)], headers=headers
                    )
                except httpx.TimeoutException:
                    state["timeouts"] += 1
                    continue
                except httpx.HTTPError:
                    state["errors"] += 1
                    await asyncio.sleep(0.01)
                    continue
                codes[response.status_code] += 1
                if response.status_code == 429 and "retry-after" not in response.headers:
                    state["no_retry_after"] += 1

        tasks = [asyncio.create_task(worker(i)) for i in range(connections)]
        _, pending = await asyncio.wait(tasks, timeout=duration + timeout + 5)
        for task in pending:  # bounded no matter what: a stuck request is cancelled, counted as a timeout
            task.cancel()
            state["timeouts"] += 1
        await asyncio.gather(*pending, return_exceptions=True)
    return codes, state["sent"], state["timeouts"], state["errors"], state["no_retry_after"]


def drill(
    models_dir: Path,
    model: str | None,
    *,
    duration: float = 10.0,
    connections: int = 400,
    client: str = "auto",
    max_concurrency: int = 2,
    max_queue: int = 8,
    rss_limit_mb: float = 400.0,
    rss_growth_mb: float = 100.0,
    health_interval: float = 0.1,
    health_timeout: float = 2.0,
    request_timeout: float = 10.0,
    drain_timeout: float = 10.0,
    max_requests: int = 1_000_000,
    server_cpus: str | None = None,
    log=print,
) -> DrillResult:
    """Run the drill once against a fresh service; the returned result says which checks passed."""
    import httpx

    if client == "auto":
        client = "wrk" if have_wrk() else "httpx"
    result = DrillResult(client=client)
    env = {"MAX_CONCURRENCY": str(max_concurrency), "MAX_QUEUE": str(max_queue)}
    server = service_server(models_dir, model, env=env, cpus=server_cpus, name="drill")
    with server:
        server.wait_ready(timeout=120)
        url = server.url + "/generate"
        with httpx.Client(timeout=30) as http:
            for body in BODIES * 3:  # warm: the baseline RSS is a served-some-requests RSS
                http.post(url, content=body, headers={"Content-Type": "application/json"}).raise_for_status()
        result.rss_baseline_mb = rss_mb(server.pid)
        log(
            f"# drill: {client} x{connections} for {duration:g}s on {server.url} "
            f"(MAX_CONCURRENCY={max_concurrency} MAX_QUEUE={max_queue}; log {server.log_path})"
        )

        health = HealthPoller(server.url + "/healthz", health_interval, health_timeout)
        health.start()
        began = time.perf_counter()
        try:
            with ProcSampler(server.pid, 0.05) as sampler:
                if client == "wrk":
                    report = run_wrk(
                        url,
                        bodies=BODIES,
                        duration=duration,
                        connections=connections,
                        timeout=request_timeout,
                    )
                    result.codes = dict(report["codes"])
                    result.requests = report["requests"]
                    result.timeouts = report["timeouts"]
                    result.socket_errors = report["socket_errors"]
                    result.no_retry_after = report["no_retry_after"]
                else:
                    codes, sent, timeouts, errors, no_ra = asyncio.run(
                        _httpx_load(url, duration, connections, request_timeout, max_requests)
                    )
                    result.codes = dict(codes)
                    result.requests, result.timeouts, result.socket_errors, result.no_retry_after = (
                        sent,
                        timeouts,
                        errors,
                        no_ra,
                    )
        finally:
            result.load_seconds = time.perf_counter() - began
            health.stop()
        result.rss_max_mb = sampler.rss_max
        result.cpu_percent = sampler.cpu_percent
        result.health_polls, result.health_failures, result.health_max_ms = (
            health.polls,
            health.failures,
            health.max_ms,
        )

        # After the storm: the backlog drains (requests queued when wrk hung up are still generated),
        # then a normal request, readiness, and nothing left in flight.
        drained = settle(server, timeout=drain_timeout)
        after_status, after_detail = None, ""
        with httpx.Client(timeout=30) as http:
            try:
                response = http.post(url, json={"label": 1, "n": 4, "seed": 7})
                after_status = response.status_code
                after_png = response.content.startswith(PNG_SIGNATURE)
                after_detail = (
                    f"{after_status} {response.headers.get('content-type')}, {len(response.content)} B"
                )
            except httpx.HTTPError as e:
                after_png, after_detail = False, f"{type(e).__name__}: {e}"
            try:
                ready_status = http.get(server.url + "/readyz").status_code
            except httpx.HTTPError as e:
                ready_status = f"{type(e).__name__}"
        left = in_flight(server)
        exit_status = server.stop()

    r = result
    r.check(
        "only 200 or 429",
        r.other == 0 and r.timeouts == 0 and r.socket_errors == 0,
        f"other={r.other} timeouts={r.timeouts} socket_errors={r.socket_errors}",
    )
    r.check(
        "429 carries Retry-After", r.no_retry_after == 0, f"{r.no_retry_after} of {r.rejected} without it"
    )
    r.check("overloaded (some 429)", r.rejected > 0, f"{r.rejected} x 429")
    r.check("still serving (some 200)", r.ok > 0, f"{r.ok} x 200")
    r.check(
        "/healthz 200 throughout",
        r.health_polls > 0 and not r.health_failures,
        f"{r.health_polls} polls, {len(r.health_failures)} failed"
        f"{' (' + '; '.join(r.health_failures[:3]) + ')' if r.health_failures else ''}"
        f", max {r.health_max_ms:.0f} ms",
    )
    r.check(f"RSS < {rss_limit_mb:g} MB", r.rss_max_mb < rss_limit_mb, f"max {r.rss_max_mb:.0f} MB")
    growth = r.rss_max_mb - r.rss_baseline_mb
    r.check(
        f"RSS growth < {rss_growth_mb:g} MB",
        growth < rss_growth_mb,
        f"{growth:+.0f} MB over the warmed {r.rss_baseline_mb:.0f} MB",
    )
    r.check("normal request afterwards", after_status == 200 and after_png, after_detail)
    r.check("/readyz 200 afterwards", ready_status == 200, f"{ready_status}")
    r.check(
        f"backlog drained within {drain_timeout:g} s",
        left is not None and left <= 1,  # the /metrics request counts itself
        f"{drained:.2f} s; then cgan_http_requests_in_flight={left}",
    )
    r.check("SIGTERM -> exit 0", exit_status == 0, f"exit status {exit_status}")
    return r


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load (10; CI: 3)")
    p.add_argument("--connections", type=int, help="concurrent connections (wrk 400, httpx 300)")
    p.add_argument("--client", choices=("auto", "wrk", "httpx"), default="auto")
    p.add_argument("--max-concurrency", type=int, default=2, help="the service's MAX_CONCURRENCY (2)")
    p.add_argument("--max-queue", type=int, default=8, help="the service's MAX_QUEUE (8)")
    p.add_argument("--rss-limit-mb", type=float, default=400.0)
    p.add_argument("--rss-growth-mb", type=float, default=100.0)
    p.add_argument("--health-interval", type=float, default=0.1)
    p.add_argument(
        "--health-timeout", type=float, default=2.0, help="a slower /healthz answer is a failure (2)"
    )
    p.add_argument("--request-timeout", type=float, default=10.0)
    p.add_argument("--drain-timeout", type=float, default=10.0, help="seconds for the backlog to drain (10)")
    p.add_argument("--max-requests", type=int, default=1_000_000, help="httpx client: stop after this many")
    p.add_argument("--models-dir", help="MODELS_DIR (default: the cached benchmark model)")
    p.add_argument("--model", help="model name in --models-dir")
    p.add_argument(
        "--fake-model", action="store_true", help="serve the tests' tiny ONNX model (no TensorFlow)"
    )
    p.add_argument("--server-cpus", help="taskset -c list for the service")
    args = p.parse_args(argv)

    if args.fake_model:
        models_dir, model = fake_models_dir()
    else:
        models_dir, model, _ = resolve_models(args.models_dir, args.model)
    client = args.client if args.client != "auto" else ("wrk" if have_wrk() else "httpx")
    connections = args.connections or (400 if client == "wrk" else 300)
    result = drill(
        models_dir,
        model,
        duration=args.duration,
        connections=connections,
        client=client,
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        rss_limit_mb=args.rss_limit_mb,
        rss_growth_mb=args.rss_growth_mb,
        health_interval=args.health_interval,
        health_timeout=args.health_timeout,
        request_timeout=args.request_timeout,
        drain_timeout=args.drain_timeout,
        max_requests=args.max_requests,
        server_cpus=args.server_cpus,
    )
    print(result.counts_line())
    print(
        f"server: RSS {result.rss_baseline_mb:.0f} -> max {result.rss_max_mb:.0f} MB,"
        f" CPU {result.cpu_percent:.0f}%, goodput {result.goodput:.0f} x 200/s"
    )
    print()
    print(
        markdown_table(
            ["check", "result", "detail"], [[n, "pass" if ok else "FAIL", d] for n, ok, d in result.checks]
        )
    )
    print()
    print("overload drill: PASSED" if result.passed else "overload drill: FAILED")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
