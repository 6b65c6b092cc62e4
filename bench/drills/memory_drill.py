"""Memory drill (issue #32): the pod's memory under hostile load, with the deployment's default settings.

    python -m bench.drills.memory_drill            # 2x the review's sizes (~1 min)
    python -m bench.drills.memory_drill --quick    # 1/10 of the connection and client counts (CI, ~25 s)

Starts ``python -m service`` on 127.0.0.1 as deployed (WORKERS=2, the pod's two cores; every limit at its
default: BODY_BUDGET_BYTES 16 MiB a worker, MAX_INFER_BODY_BYTES 4 MiB, BODY_TIMEOUT_SECONDS 10, ...) with
the bundled model, and runs three scenarios one after another:

* ``stall``: 500 connections (``--quick``: 50) each declare a ``/v2/models/<m>/infer`` body of 4 MiB - 1
  (``Content-Length``), send all of it but the last byte and stall, for ``--stall-seconds``;
* ``nested``: 32 (3) clients at once, again and again for ``--nested-seconds``, post a 4 MiB - 1 JSON infer
  body whose ``label`` data is a nested list ``[[[]],[[]],...]`` (refused before or by the parse);
* ``pick``: twice, a filtered ``POST /dataset {"per_label": 10000, "min_confidence": 1.0}`` whose
  client disconnects after 2 s: the pick must stop, so the server's CPU use falls back.

Meanwhile a good client sends ``POST /generate {"label": 1, "n": 16}`` every 0.2 s; each answer is a 200,
a 429/503 with ``Retry-After`` (counted), or a failure. The RSS of the whole process tree (supervisor and
workers, found by walking /proc) is sampled every 0.2 s, and the tree's CPU time (utime + stime).

Prints a table (scenario, peak RSS MiB, good 200s / total, the hostile clients' refusals by status;
``reset``: the connection was reset before a status line, ``held``: no answer while it stalled), the CPU
use after each disconnect, and ``memory drill: PASSED`` or ``FAILED`` (exit 1) on: a peak at or above the
pod's memory limit (read from deploy/k8s/base/serve-deployment.yaml), fewer than 90% of the good requests
answered 200 in a scenario, a good request that failed, or a server still busy (more than ``--idle-cpu``
% of a core) 5 s after a pick's client left. Everything targets 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import resource
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx  # noqa: E402

from bench.harness import HOST, REPO, cpu_seconds, markdown_table, rss_mb, service_server, verdict  # noqa: E402

DEPLOYMENT = REPO / "deploy" / "k8s" / "base" / "serve-deployment.yaml"
#: MAX_INFER_BODY_BYTES' default: the largest infer body a client may declare.
INFER_BODY = 4 * 1024 * 1024 - 1
BUNDLED = "mnist-5k-cgan-conv"


def memory_limit_mib(path: Path = DEPLOYMENT) -> float:
    """The serve container's ``resources.limits.memory`` in MiB (``1Gi`` -> 1024)."""
    text = path.read_text()
    match = re.search(r"^\s*limits:\s*\n(?:\s+\w+:.*\n)*?\s+memory:\s*(\d+)(Gi|Mi)\s*$", text, re.M)
    if match is None:
        raise SystemExit(f"memory drill: no resources.limits.memory in {path}")
    return float(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)


@dataclass
class Scenario:
    name: str
    peak_mib: float = 0.0
    good: Counter = field(default_factory=Counter)
    refusals: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)


@dataclass
class Drill:
    pid: int
    scenario: Scenario
    done: list[Scenario] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)

    def switch(self, name: str) -> Scenario:
        self.done.append(self.scenario)
        self.scenario = Scenario(name)
        return self.scenario


async def sample_rss(drill: Drill, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError):
            drill.scenario.peak_mib = max(drill.scenario.peak_mib, rss_mb(drill.pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


async def good_client(drill: Drill, url: str, stop: asyncio.Event) -> None:
    """``n=16`` every 0.2 s on a connection of its own (a new one after each refusal that closes it)."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while not stop.is_set():
            started = time.monotonic()
            try:
                response = await client.post("/generate", json={"label": 1, "n": 16})
            except httpx.HTTPError as e:
                drill.scenario.good[type(e).__name__] += 1
                if len(drill.examples) < 10:
                    drill.examples.append(f"good client in {drill.scenario.name}: {type(e).__name__}: {e}")
            else:
                status = response.status_code
                retry = response.headers.get("retry-after", "").isdigit()
                key = status if status == 200 or (status in (429, 503) and retry) else f"{status}!"
                drill.scenario.good[key] += 1
                if key == f"{status}!" and len(drill.examples) < 10:
                    drill.examples.append(
                        f"good client in {drill.scenario.name}: {status} {response.text[:200]}"
                    )
            await asyncio.sleep(max(0.0, 0.2 - (time.monotonic() - started)))


async def _status(reader: asyncio.StreamReader, timeout: float) -> str:
    """The status code of an answer, ``reset`` if the connection broke first, ``held`` if none came."""
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError:
        return "held"
    except OSError:
        return "reset"
    parts = line.split()
    return parts[1].decode() if len(parts) > 1 else "reset"


async def staller(port: int, model: str, hold: float) -> str:
    """Declare a 4 MiB - 1 infer body, send all but its last byte, stall; what the server answered."""
    head = (
        f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {INFER_BODY}\r\n\r\n"
    ).encode()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
    except (OSError, TimeoutError):
        return "connect failed"
    answer = asyncio.ensure_future(_status(reader, hold))
    chunk = b" " * 65536
    try:
        writer.write(head)
        left = INFER_BODY - 1
        deadline = time.monotonic() + hold
        while left and not answer.done() and time.monotonic() < deadline:
            writer.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
            # drain() waits while the server does not read: the client holds 64 KiB a connection, not 4 MiB.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(writer.drain(), max(0.01, deadline - time.monotonic()))
        return await answer
    except OSError:
        return await answer if answer.done() else "reset"
    finally:
        answer.cancel()
        writer.transport.abort()


def nested_body() -> bytes:
    """A 4 MiB - 1 Open Inference Protocol body whose ``label`` data is ``[[[]],[[]],...]``."""
    head = b'{"inputs":[{"name":"label","datatype":"INT64","shape":[%d],"data":['
    tail = b"]}]}"
    count = (INFER_BODY - len(head % 10**6) - len(tail) + 1) // 5
    body = head % count + b",".join([b"[[]]"] * count) + tail
    return body + b" " * (INFER_BODY - len(body))  # padded to the exact size with JSON whitespace


async def nested(drill: Drill, url: str, model: str, clients: int, seconds: float) -> None:
    body = nested_body()
    deadline = time.monotonic() + seconds

    async def one(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            try:
                response = await client.post(
                    f"/v2/models/{model}/infer", content=body, headers={"Content-Type": "application/json"}
                )
            except httpx.HTTPError as e:
                drill.scenario.refusals[type(e).__name__] += 1
            else:
                drill.scenario.refusals[str(response.status_code)] += 1

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await asyncio.gather(*(one(client) for _ in range(clients)))


async def pick(drill: Drill, port: int, per_label: int, idle_cpu: float) -> float | None:
    """A filtered /dataset whose client leaves after 2 s; seconds until the tree's CPU use fell below
    ``idle_cpu`` % of a core (over 0.5 s), None if not within 5 s."""
    body = json.dumps({"per_label": per_label, "min_confidence": 1.0}).encode()
    head = f"POST /dataset HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    await writer.drain()
    cpu0 = cpu_seconds(drill.pid)
    with contextlib.suppress(TimeoutError):
        line = await asyncio.wait_for(reader.readline(), 2)
        drill.scenario.refusals[line.split()[1].decode() if len(line.split()) > 1 else "closed"] += 1
    busy = 100 * (cpu_seconds(drill.pid) - cpu0) / 2
    writer.transport.abort()
    left = time.monotonic()
    drill.scenario.refusals["left after 2 s"] += 1
    while time.monotonic() - left < 5:
        cpu, t = cpu_seconds(drill.pid), time.monotonic()
        await asyncio.sleep(0.5)
        rate = 100 * (cpu_seconds(drill.pid) - cpu) / (time.monotonic() - t)
        if rate < idle_cpu:
            drill.scenario.notes.append(
                f"CPU {busy:.0f}% while picking, {rate:.0f}% by {time.monotonic() - left:.1f}s after the"
                " client left"
            )
            return time.monotonic() - left
    drill.scenario.notes.append(f"CPU {busy:.0f}% while picking, still {rate:.0f}% 5 s after the client left")
    return None


async def drive(
    drill: Drill, url: str, port: int, model: str, args: argparse.Namespace
) -> list[float | None]:
    scale = 10 if args.quick else 1
    stop = asyncio.Event()
    background = [
        asyncio.ensure_future(sample_rss(drill, stop)),
        asyncio.ensure_future(good_client(drill, url, stop)),
    ]
    await asyncio.sleep(2)  # idle figures first

    drill.switch("stall")
    answers = await asyncio.gather(*(staller(port, model, args.stall_seconds) for _ in range(500 // scale)))
    drill.scenario.refusals.update(answers)
    await asyncio.sleep(1)

    drill.switch("nested")
    await nested(drill, url, model, max(1, 32 // scale), args.nested_seconds)
    await asyncio.sleep(1)

    drill.switch("pick")
    settled = []
    for _ in range(2):
        settled.append(await pick(drill, port, 10_000, args.idle_cpu))
        await asyncio.sleep(1)

    drill.switch("after")
    await asyncio.sleep(2)
    stop.set()
    await asyncio.gather(*background)
    drill.switch("")
    return settled


def serve(models: Path):
    """The service as deployed: two workers, default limits, the bundled model (its judge makes the pick a
    real one: a few thousand candidates a second, so 2 s is mid-pick)."""
    env = {"WORKERS": "2", "BUNDLED_MODELS": "1"}
    return service_server(models, BUNDLED, env=env, name="memory"), BUNDLED


def _raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))  # the server inherits it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1/10 of the counts, shorter scenarios (CI)")
    parser.add_argument("--stall-seconds", type=float, help="how long stallers hold (default 12; quick 3)")
    parser.add_argument(
        "--nested-seconds", type=float, help="how long nested bodies are sent (default 10; quick 3)"
    )
    parser.add_argument("--idle-cpu", type=float, default=35.0, help="%% of a core that counts as idle")
    args = parser.parse_args(argv)
    args.stall_seconds = args.stall_seconds or (3.0 if args.quick else 12.0)
    args.nested_seconds = args.nested_seconds or (3.0 if args.quick else 10.0)
    limit = memory_limit_mib()
    _raise_fd_limit(4096)

    with tempfile.TemporaryDirectory(prefix="memory-drill-") as tmp:
        models = Path(tmp) / "models"
        models.mkdir()
        server, model = serve(models)
        with server:
            server.wait_ready(timeout=120)
            drill = Drill(server.pid, Scenario("idle"))
            settled = asyncio.run(drive(drill, server.url, server.port, model, args))
            alive = httpx.get(f"{server.url}/readyz", timeout=5).status_code

    rows, failures = [], []
    for s in drill.done:
        answered = sum(s.good.values())
        rows.append(
            [
                s.name,
                f"{s.peak_mib:.0f}",
                f"{s.good[200]} / {answered}",
                ", ".join(f"{k}: {v}" for k, v in sorted(s.good.items(), key=str) if k != 200) or "-",
                ", ".join(f"{k}: {v}" for k, v in sorted(s.refusals.items())) or "-",
            ]
        )
        if s.peak_mib >= limit:
            failures.append(f"{s.name}: peak RSS {s.peak_mib:.0f} MiB >= the pod's limit {limit:.0f} MiB")
        if answered and s.good[200] < 0.9 * answered:
            failures.append(f"{s.name}: {s.good[200]} of {answered} good requests answered 200 (< 90%)")
        broken = {k: v for k, v in s.good.items() if k not in (200, 429, 503)}
        if broken:
            failures.append(f"{s.name}: good requests failed: {broken}")
    headers = ["scenario", "peak RSS MiB", "good 200s / total", "good, other", "hostile clients' answers"]
    print(markdown_table(headers, rows))
    for s in drill.done:
        for note in s.notes:
            print(f"{s.name}: {note}")
    peak = max(s.peak_mib for s in drill.done)
    rounded = [None if x is None else round(x, 1) for x in settled]
    print(f"memory: peak_mib={peak:.0f} limit_mib={limit:.0f} settled_s={rounded}")
    if any(x is None for x in settled):
        failures.append(
            f"the server was still busy 5 s after a pick's client left (> {args.idle_cpu:.0f}% of a core)"
        )
    if alive != 200:
        failures.append(f"/readyz answered {alive} after the drill")
    failures += [f"e.g. {e}" for e in drill.examples[:3] if failures]
    return verdict("memory drill", failures)


if __name__ == "__main__":
    sys.exit(main())
