"""HTTP load on the real service, side by side with the floor, the raw model and the naive peer.

    python -m bench.load.service_load                     # full run (~5 min), default cached model
    python -m bench.load.service_load --quick             # 3 s rows, fewer rows (a smoke run, ~1.5 min)
    python -m bench.load.service_load --models-dir DIR --model NAME --run-dir RUN   # your own model
    python -m bench.load.service_load --only 'service/*' --only 'floor/*'           # some rows only

In one run, one server at a time on 127.0.0.1 (never two at once):

* **raw**: in this process, one request at a time, unbatched: the service's registry and data plane
  (``service.dataplane.images_now``: the same path as a request, without the batcher or HTTP); for the
  dataset, ``model.generate`` per DATASET_BATCH images into raw bytes. One caller, no HTTP.
* **service**: ``python -m service`` as deployed (uvloop, httptools, one worker, default limits), driven by
  ``wrk -t1 -cC`` with ``bench/wrk_report.lua`` (POST body from the environment; ``done()`` prints the
  percentiles and status codes); ``/dataset`` by sequential streamed httpx requests.
* **floor**: ``bench/peers/floor_app.py``, FastAPI answering a constant ~300-byte PNG, same uvicorn settings.
* **naive**: ``bench/peers/naive_app.py``, FastAPI + Keras ``model.predict`` + Pillow.

Per row: 2xx requests/s, images/s, latency p50/p90/p99, non-2xx and timeouts, server peak RSS (VmRSS
sampled every 100 ms) and server CPU% (utime+stime over the row; 100 = one core). Then a latency-vs-
concurrency sweep of the service (n=16 png) and the floor. Writes ``bench/results/service_load.json``
and ``bench/results/latency_vs_concurrency.png``; prints markdown tables for BENCHMARKS.md.

Goals (G2-G4 in the goal column): n=16 png >= 50x the naive peer's req/s
(G2); n=16 png p99 at 32 connections <= 1.5x the floor's (G3); /dataset >= 50% of raw images/s (G4).

Reproduce one wrk row by hand (the service or floor running on PORT)::

    WRK_BODY='{"label": 9, "n": 16, "format": "png", "seed": 1}' \\
        wrk -t1 -c32 -d10s --timeout=10s -s bench/wrk_report.lua http://127.0.0.1:PORT/generate
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.harness import (  # noqa: E402
    CACHE,
    REPO,
    RESULTS,
    ProcSampler,
    Server,
    fmt,
    in_process,
    machine,
    markdown_table,
    module_server,
    preflight,
    resolve_models,
    run_wrk,
    service_server,
    settle,
    write_json,
)

FULL_CASES = [(1, "png"), (16, "png"), (256, "png"), (1, "npy"), (16, "npy"), (256, "npy")]
QUICK_CASES = [(16, "png"), (256, "npy")]
NAIVE_FULL = [(1, "png"), (16, "png"), (256, "png")]
NAIVE_QUICK = [(16, "png")]
RAW_FULL = [(16, "png"), (256, "png"), (16, "npy"), (256, "npy")]
RAW_QUICK = [(16, "png"), (256, "npy")]
SWEEP_FULL = [1, 4, 16, 32, 64, 128]
SWEEP_QUICK = [1, 8, 32, 64]
LABEL = 9
MEDIA = {"png": "image/png", "npy": "application/x-npy"}

GOALS = {
    "G2": "n=16 png req/s >= 50x naive peer",
    "G3": "n=16 png p99 at c=32 <= 1.5x floor p99",
    "G4": "/dataset images/s >= 0.50x raw model",
}


def body(n: int, fmt_: str) -> str:
    return json.dumps({"label": LABEL, "n": n, "format": fmt_, "seed": 1})


def case_id(n: int, fmt_: str) -> str:
    return f"generate-n{n}-{fmt_}"


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: list[dict] = []  # the main table
        self.sweep: list[dict] = []  # latency vs concurrency

    def wanted(self, row_id: str) -> bool:
        return not self.args.only or any(fnmatch.fnmatch(row_id, p) for p in self.args.only)

    def log(self, message: str) -> None:
        print(f"# {message}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------------------------------ wrk rows

    def wrk_row(
        self, server: Server, row_id: str, n: int, fmt_: str, connections: int, duration: float
    ) -> dict:
        a = self.args
        settled = settle(server)
        if settled > 1:
            self.log(f"waited {settled:.1f}s for requests orphaned by the previous run to finish")
        self.log(f"{row_id}: wrk -t{a.threads} -c{connections} -d{duration:g}s")
        with ProcSampler(server.pid) as sampler:
            report = run_wrk(
                server.url + "/generate",
                body=body(n, fmt_),
                duration=duration,
                connections=connections,
                threads=a.threads,
                timeout=a.timeout,
                cpus=a.wrk_cpus,
            )
        return {
            "id": row_id,
            "target": row_id.split("/")[0],
            "case": row_id.split("/")[1],
            "n": n,
            "format": fmt_,
            "connections": connections,
            "rps": report["rps"],
            "images_per_s": report["rps"] * n,
            "p50_ms": report["p50_ms"],
            "p90_ms": report["p90_ms"],
            "p99_ms": report["p99_ms"],
            "max_ms": report["max_ms"],
            "requests": report["requests"],
            "ok": report["ok"],
            "non2xx": report["non2xx"],
            "timeouts": report["timeouts"],
            "socket_errors": report["socket_errors"],
            "codes": report["codes"],
            "mb_per_s": report["bytes"] / report["seconds"] / 1e6,
            "rss_max_mb": sampler.rss_max,
            "cpu_percent": sampler.cpu_percent,
            "seconds": report["seconds"],
        }

    def warm(self, server: Server, cases: list[tuple[int, str]]) -> None:
        """One checked request per case (fails fast on a broken server), then discarded load."""
        for n, fmt_ in {(16, "png"), *cases}:
            preflight(server, body(n, fmt_), MEDIA[fmt_])
        if self.args.warmup > 0:
            run_wrk(
                server.url + "/generate",
                body=body(16, "png"),
                duration=self.args.warmup,
                connections=self.args.connections,
                threads=self.args.threads,
                timeout=self.args.timeout,
                cpus=self.args.wrk_cpus,
            )

    def sweep_rows(self, server: Server, target: str) -> None:
        a = self.args
        for c in a.sweep:
            row_id = f"{target}/sweep-c{c}"
            main = next(
                (
                    r
                    for r in self.rows
                    if r["target"] == target
                    and r["connections"] == c
                    and r["n"] == 16
                    and r["format"] == "png"
                ),
                None,
            )
            if main is not None:  # the main row already measured this point
                self.sweep.append({**main, "id": row_id})
                continue
            self.sweep.append(self.wrk_row(server, row_id, 16, "png", c, a.sweep_duration))

    # ------------------------------------------------------------------------------------------ targets

    def run_raw(self, model_name: str, version_dir: Path) -> None:
        import numpy as np

        import cgan_contract as contract
        from service.dataplane import ImageRequest, images_now

        a = self.args
        cases = [c for c in a.raw_cases if self.wanted(f"raw/{case_id(*c)}")]
        want_ds = self.wanted("raw/dataset-10k")
        if not cases and not want_ds:
            return
        runtime = in_process(version_dir.parent.parent, model_name)
        settings = runtime.settings
        model = runtime.registry.models[model_name]
        self.log(f"raw: onnxruntime in-process, intra_op_threads={settings.intra_op_threads}")
        for n, fmt_ in cases:
            times: list[float] = []
            cpu0, start = time.process_time(), time.perf_counter()
            seed = 0
            while (time.perf_counter() - start < a.duration or len(times) < 5) and len(times) < 1_000_000:
                t = time.perf_counter()
                images_now(runtime, ImageRequest(label=LABEL, n=n, seed=seed, format=fmt_))
                times.append(time.perf_counter() - t)
                seed += n
            self.rows.append(self._raw_row(f"raw/{case_id(n, fmt_)}", n, fmt_, times, cpu0, start))
        if want_ds:
            total = model.card.num_classes * a.per_label
            labels_all = np.repeat(np.arange(model.card.num_classes, dtype=np.int64), a.per_label)
            times = []
            cpu0, start = time.process_time(), time.perf_counter()
            for i in range(a.dataset_requests):
                t = time.perf_counter()
                size = 0
                for b in range(0, total, settings.dataset_batch):
                    seeds = contract.request_seeds(i * total + b, min(settings.dataset_batch, total - b))
                    images = model.generate(labels_all[b : b + len(seeds)], seeds)
                    size += len(np.ascontiguousarray(images).data.cast("B"))
                times.append(time.perf_counter() - t)
            self.rows.append(self._raw_row("raw/dataset-10k", total, "npy", times, cpu0, start))

    def _raw_row(self, row_id: str, n: int, fmt_: str, times: list[float], cpu0: float, start: float) -> dict:
        wall = time.perf_counter() - start
        q = statistics.quantiles(times, n=100, method="inclusive") if len(times) > 1 else times * 99
        return {
            "id": row_id,
            "target": "raw",
            "case": row_id.split("/")[1],
            "n": n,
            "format": fmt_,
            "connections": 1,
            "rps": len(times) / sum(times),
            "images_per_s": len(times) * n / sum(times),
            "p50_ms": q[49] * 1e3,
            "p90_ms": q[89] * 1e3,
            "p99_ms": q[98] * 1e3,
            "requests": len(times),
            "ok": len(times),
            "non2xx": 0,
            "timeouts": 0,
            "rss_max_mb": None,
            "cpu_percent": 100 * (time.process_time() - cpu0) / wall,
            "seconds": wall,
        }

    def run_service(self, models_dir: Path, model_name: str) -> None:
        a = self.args
        cases = [c for c in a.cases if self.wanted(f"service/{case_id(*c)}")]
        want_ds = self.wanted("service/dataset-10k-npz")
        want_sweep = a.sweep and self.wanted("service/sweep")
        if not (cases or want_ds or want_sweep):
            return
        with service_server(models_dir, model_name, env=a.service_env, cpus=a.server_cpus) as server:
            ready = server.wait_ready()
            self.log(f"service ready in {ready['ready_s']:.2f}s on {server.url} (log: {server.log_path})")
            self.warm(server, cases)
            for n, fmt_ in cases:
                self.rows.append(
                    self.wrk_row(server, f"service/{case_id(n, fmt_)}", n, fmt_, a.connections, a.duration)
                )
            if want_ds:
                self.rows.append(self.dataset_row(server))
            if want_sweep:
                self.sweep_rows(server, "service")

    def dataset_row(self, server: Server) -> dict:
        import httpx

        a = self.args
        self.log(
            f"service/dataset-10k-npz: {a.dataset_requests} sequential requests, per_label={a.per_label}"
        )
        settle(server)
        times, ttfb, images, size = [], [], 0, 0
        codes: dict[int, int] = {}
        timeouts = 0
        with ProcSampler(server.pid) as sampler, httpx.Client(timeout=httpx.Timeout(a.timeout * 6)) as client:
            for i in range(a.dataset_requests):
                t = time.perf_counter()
                try:
                    payload = {"per_label": a.per_label, "format": "npz", "seed": i}
                    with client.stream("POST", server.url + "/dataset", json=payload) as response:
                        codes[response.status_code] = codes.get(response.status_code, 0) + 1
                        first = None
                        for chunk in response.iter_raw(1 << 20):
                            first = first or time.perf_counter()
                            size += len(chunk)
                        if response.status_code == 200:
                            images += int(response.headers["X-Images"])
                            times.append(time.perf_counter() - t)
                            ttfb.append((first or time.perf_counter()) - t)
                except httpx.TimeoutException:
                    timeouts += 1
        elapsed = sum(times) or 1e-9
        return {
            "id": "service/dataset-10k-npz",
            "target": "service",
            "case": "dataset-10k-npz",
            "n": images // max(1, len(times)),
            "format": "npz",
            "connections": 1,
            "rps": len(times) / elapsed,
            "images_per_s": images / elapsed,
            "p50_ms": statistics.median(times) * 1e3 if times else None,
            "p90_ms": None,
            "p99_ms": max(times) * 1e3 if times else None,
            "ttfb_ms": statistics.median(ttfb) * 1e3 if ttfb else None,
            "requests": sum(codes.values()) + timeouts,
            "ok": len(times),
            "non2xx": sum(v for k, v in codes.items() if k != 200),
            "timeouts": timeouts,
            "codes": codes,
            "mb_per_s": size / elapsed / 1e6,
            "rss_max_mb": sampler.rss_max,
            "cpu_percent": sampler.cpu_percent,
            "seconds": sampler.wall,
        }

    def run_floor(self) -> None:
        a = self.args
        want_main = self.wanted("floor/generate")
        want_sweep = a.sweep and self.wanted("floor/sweep")
        if not (want_main or want_sweep):
            return
        with module_server("bench.peers.floor_app", "floor", cpus=a.server_cpus) as server:
            server.wait_ready()
            self.warm(server, [])
            if want_main:
                self.rows.append(
                    self.wrk_row(server, "floor/generate-n16-png", 16, "png", a.connections, a.duration)
                )
            if want_sweep:
                self.sweep_rows(server, "floor")

    def run_naive(self, model_name: str, version_dir: Path) -> None:
        import subprocess

        a = self.args
        cases = [c for c in a.naive_cases if self.wanted(f"naive/{case_id(*c)}")]
        if not cases or a.no_naive:
            return
        keras_file = (
            Path(a.keras_model)
            if a.keras_model
            else CACHE / "naive" / f"{model_name}-v{version_dir.name}.keras"
        )
        if not keras_file.exists():
            run_dir = Path(a.run_dir) if a.run_dir else CACHE / "runs" / model_name
            if not (run_dir / "run.json").exists():
                self.log(f"naive: skipped (no training run at {run_dir}; pass --run-dir or --keras-model)")
                return
            self.log(f"naive: exporting the Keras generator from {run_dir} to {keras_file}")
            argv = [sys.executable, "-m", "bench.peers.naive_app", "--export", str(run_dir), str(keras_file)]
            subprocess.run(argv, check=True, timeout=600, cwd=REPO)
        env = {"NAIVE_MODEL": str(keras_file), "TF_CPP_MIN_LOG_LEVEL": "3"}
        with module_server("bench.peers.naive_app", "naive", env=env, cpus=a.server_cpus) as server:
            server.wait_ready(timeout=300)
            self.warm(server, cases)
            for n, fmt_ in cases:
                # model.predict is slow enough (seconds at c=32) that short rows would finish no request.
                self.rows.append(
                    self.wrk_row(
                        server, f"naive/{case_id(n, fmt_)}", n, fmt_, a.connections, a.naive_duration
                    )
                )

    # ------------------------------------------------------------------------------------------ report

    def find(self, row_id: str, connections: int | None = None) -> dict | None:
        """A main row by id (at ``connections`` if given), else that target's sweep point."""
        for row in self.rows:
            if row["id"] == row_id and (connections is None or row["connections"] == connections):
                return row
        if connections is not None and row_id.endswith("generate-n16-png"):
            target = row_id.split("/")[0]
            return next(
                (r for r in self.sweep if r["target"] == target and r["connections"] == connections), None
            )
        return None

    def goals(self) -> list[dict]:
        svc = self.find("service/generate-n16-png")
        naive = self.find("naive/generate-n16-png")
        svc32 = self.find("service/generate-n16-png", 32)
        floor32 = self.find("floor/generate-n16-png", 32)
        ds = self.find("service/dataset-10k-npz")
        raw_ds = self.find("raw/dataset-10k")

        def ratio(x: dict | None, y: dict | None, key: str) -> float | None:
            if x is None or y is None or not y.get(key) or x.get(key) is None:
                return None
            return x[key] / y[key]

        checks = [
            (
                "G2",
                ratio(svc, naive, "rps"),
                50.0,
                ">=",
                "service/generate-n16-png",
                "naive/generate-n16-png",
            ),
            ("G3", ratio(svc32, floor32, "p99_ms"), 1.5, "<=", "service n16 png @c32", "floor @c32"),
            (
                "G4",
                ratio(ds, raw_ds, "images_per_s"),
                0.50,
                ">=",
                "service/dataset-10k-npz",
                "raw/dataset-10k",
            ),
        ]
        out = []
        for goal, value, target, op, left, right in checks:
            if value is None:
                result = "n/a"
            else:
                result = "pass" if (value >= target if op == ">=" else value <= target) else "miss"
            out.append(
                {
                    "goal": goal,
                    "text": GOALS[goal],
                    "value": value,
                    "target": target,
                    "op": op,
                    "result": result,
                    "measured": f"{left} / {right}",
                }
            )
        return out

    def row_goals(self, row: dict, goals: list[dict]) -> str:
        tags = []
        if row["id"] == "service/generate-n16-png":
            tags = [g for g in goals if g["goal"] == "G2"]
            if row["connections"] == 32:
                tags += [g for g in goals if g["goal"] == "G3"]
        elif row["id"] == "service/dataset-10k-npz":
            tags = [g for g in goals if g["goal"] == "G4"]
        return ", ".join(f"{g['goal']} {g['result']}" for g in tags) or ""

    def ceiling_note(self) -> str | None:
        """What the raw model allows n=16 png at best; the floor is a reference line, not a goal (the retired
        G1 asked for 70% of it, which no server can reach once one model run costs more than its request)."""
        raw = [r for r in self.rows if r["target"] == "raw" and r["case"].startswith("generate")]
        floor = self.find("floor/generate-n16-png")
        if not raw or floor is None:
            return None
        best = max(r["images_per_s"] for r in raw)
        return (
            f"Model ceiling: the raw model's best rate here is {fmt(best, 0)} images/s, so n=16 can reach at "
            f"most ~{fmt(best / 16)} req/s on this machine (without batching gains); the empty endpoint "
            f"(floor, a reference line only) answers {fmt(floor['rps'])} req/s."
        )

    def report(self, meta: dict) -> None:
        goals = self.goals()
        headers = [
            "target",
            "row",
            "conc",
            "req/s",
            "images/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "non-2xx/timeouts",
            "RSS max MB",
            "CPU %",
            "goal",
        ]
        order = {"service": 0, "floor": 1, "naive": 2, "raw": 3}
        table = []
        for r in sorted(self.rows, key=lambda r: order.get(r["target"], 9)):
            conc = (
                "in-process"
                if r["target"] == "raw"
                else ("1 (seq.)" if r["case"].startswith("dataset") else r["connections"])
            )
            table.append(
                [
                    r["target"],
                    r["case"],
                    conc,
                    fmt(r["rps"]),
                    fmt(r["images_per_s"], 0),
                    fmt(r["p50_ms"], 2),
                    fmt(r["p90_ms"], 2),
                    fmt(r["p99_ms"], 2),
                    f"{r['non2xx']}/{r['timeouts']}",
                    fmt(r["rss_max_mb"], 0),
                    fmt(r["cpu_percent"], 0),
                    self.row_goals(r, goals),
                ]
            )
        print()
        print(
            f"### Service load ({meta['cpus_affinity']} CPUs, {meta.get('cpu_model', '?')}, "
            f"{self.args.duration:g} s per row, wrk -t{self.args.threads}; load avg at start "
            f"{meta['loadavg_at_start'][0]:.1f})"
        )
        print()
        print(markdown_table(headers, table))
        print()
        print(
            "req/s counts 2xx responses only; images/s = req/s x n. Dataset rows: sequential streamed "
            "requests, p50 = median request time, p99 column = slowest. CPU % 100 = one core."
        )
        print()
        print(
            markdown_table(
                ["goal", "what", "measured", "value", "target", "result"],
                [
                    [
                        g["goal"],
                        g["text"],
                        g["measured"],
                        fmt(g["value"], 2),
                        f"{g['op']} {g['target']:g}",
                        g["result"],
                    ]
                    for g in goals
                ],
            )
        )
        ceiling = self.ceiling_note()
        if ceiling:
            print()
            print(ceiling)
        if self.sweep:
            print()
            print("### Latency vs concurrency (POST /generate n=16 png vs the floor)")
            print()
            cs = sorted({r["connections"] for r in self.sweep})
            rows = []
            for c in cs:
                s = next((r for r in self.sweep if r["target"] == "service" and r["connections"] == c), None)
                f = next((r for r in self.sweep if r["target"] == "floor" and r["connections"] == c), None)
                rows.append(
                    [
                        c,
                        fmt(s and s["rps"]),
                        fmt(s and s["p50_ms"], 2),
                        fmt(s and s["p99_ms"], 2),
                        f"{s['non2xx']}/{s['timeouts']}" if s else "-",
                        fmt(f and f["rps"]),
                        fmt(f and f["p50_ms"], 2),
                        fmt(f and f["p99_ms"], 2),
                        fmt(s["p99_ms"] / f["p99_ms"], 2) if s and f and f["p99_ms"] else "-",
                    ]
                )
            print(
                markdown_table(
                    [
                        "conc",
                        "service req/s",
                        "p50 ms",
                        "p99 ms",
                        "non-2xx/timeouts",
                        "floor req/s",
                        "p50 ms",
                        "p99 ms",
                        "p99 service/floor",
                    ],
                    rows,
                )
            )
            print()
            print(
                "The service answers 429 beyond MAX_CONCURRENCY + MAX_QUEUE waiting requests (production "
                "defaults unless --service-env says otherwise); those count in non-2xx and in the latency."
            )
        payload = {
            "meta": meta,
            "args": {k: v for k, v in vars(self.args).items()},
            "rows": self.rows,
            "sweep": self.sweep,
            "goals": goals,
        }
        path = write_json(self.args.json_name, payload)
        print()
        print(f"wrote {_shown(path)}")
        if self.sweep:
            print(f"wrote {_shown(plot(self.sweep))}")


def _shown(path: Path) -> Path:
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def plot(sweep: list[dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax_lat, ax_rps) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"service": ("tab:blue", "service n=16 png"), "floor": ("tab:gray", "floor (constant PNG)")}
    for target, (color, label) in styles.items():
        rows = sorted((r for r in sweep if r["target"] == target), key=lambda r: r["connections"])
        if not rows:
            continue
        cs = [r["connections"] for r in rows]
        ax_lat.plot(cs, [r["p50_ms"] for r in rows], "o--", color=color, label=f"{label} p50")
        ax_lat.plot(cs, [r["p99_ms"] for r in rows], "o-", color=color, label=f"{label} p99")
        ax_rps.plot(cs, [r["rps"] for r in rows], "o-", color=color, label=label)
        for r in rows:  # latency there mixes in fast refusals: say so on the plot
            refused = r["non2xx"] + r["timeouts"]
            if refused:
                share = f"{100 * refused / max(1, r['requests']):.0f}% non-2xx"
                ax_lat.annotate(
                    share,
                    (r["connections"], r["p99_ms"]),
                    fontsize=7,
                    color=color,
                    xytext=(-40, 6),
                    textcoords="offset points",
                )
                ax_rps.annotate(
                    share,
                    (r["connections"], r["rps"]),
                    fontsize=7,
                    color=color,
                    xytext=(-40, 6),
                    textcoords="offset points",
                )
    for ax in (ax_lat, ax_rps):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["connections"] for r in sweep}))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%d"))
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("concurrent connections (wrk -t1)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_title("latency vs concurrency")
    ax_rps.set_ylabel("2xx requests/s")
    ax_rps.set_title("throughput vs concurrency")
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "latency_vs_concurrency.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--duration", type=float, help="seconds per wrk row (default 10; 3 with --quick)")
    p.add_argument("--sweep-duration", type=float, help="seconds per sweep point (default: --duration)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections for the main rows (32)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    p.add_argument("--timeout", type=float, default=10.0, help="wrk per-request timeout, s (10)")
    p.add_argument(
        "--warmup", type=float, default=1.0, help="discarded wrk seconds after each server starts (1)"
    )
    p.add_argument("--quick", action="store_true", help="short rows, fewer rows and sweep points")
    p.add_argument("--models-dir", help="MODELS_DIR to serve (default: train/cached model under BENCH_CACHE)")
    p.add_argument("--model", help="model name in --models-dir (needed when it holds several)")
    p.add_argument("--run-dir", help="training run of the model, for the naive peer's Keras generator")
    p.add_argument("--keras-model", help="a ready .keras generator for the naive peer")
    p.add_argument("--no-naive", action="store_true", help="skip the naive peer (it loads TensorFlow)")
    p.add_argument("--no-sweep", action="store_true", help="skip the latency-vs-concurrency sweep")
    p.add_argument(
        "--sweep", type=lambda s: [int(x) for x in s.split(",")], help="sweep connections, e.g. 1,16,64"
    )
    p.add_argument("--per-label", type=int, default=1000, help="/dataset per_label (1000 -> 10k images)")
    p.add_argument("--dataset-requests", type=int, help="sequential /dataset requests (3; 1 with --quick)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="GLOB",
        help="run only rows whose id matches, e.g. 'service/*', 'floor/*', 'raw/dataset-10k'",
    )
    p.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the service, e.g. MAX_QUEUE=256",
    )
    p.add_argument("--server-cpus", help="taskset -c list for the servers and the raw rows (e.g. 0-3)")
    p.add_argument("--wrk-cpus", help="taskset -c list for wrk (e.g. 4-5)")
    p.add_argument(
        "--naive-duration", type=float, help="seconds per naive-peer row (default: max(--duration, 10))"
    )
    p.add_argument("--json-name", default="service_load.json", help="file name under bench/results/")
    args = p.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.sweep_duration = args.sweep_duration or args.duration
    args.naive_duration = args.naive_duration or max(args.duration, 10.0)
    args.dataset_requests = args.dataset_requests or (1 if args.quick else 3)
    args.cases = QUICK_CASES if args.quick else FULL_CASES
    args.naive_cases = NAIVE_QUICK if args.quick else NAIVE_FULL
    args.raw_cases = RAW_QUICK if args.quick else RAW_FULL
    if args.no_sweep:
        args.sweep = []
    elif args.sweep is None:
        args.sweep = SWEEP_QUICK if args.quick else SWEEP_FULL
    args.service_env = dict(kv.split("=", 1) for kv in args.service_env)
    return args


def _cpu_list(spec: str) -> set[int]:
    cpus: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models_dir, model_name, version_dir = resolve_models(args.models_dir, args.model)
    meta = machine()
    meta.update(model=model_name, version_dir=str(version_dir), argv=sys.argv)
    bench = Bench(args)
    began = time.perf_counter()
    affinity = os.sched_getaffinity(0)
    try:
        if args.server_cpus:
            os.sched_setaffinity(0, _cpu_list(args.server_cpus))
        bench.run_raw(model_name, version_dir)
    finally:
        os.sched_setaffinity(0, affinity)
    bench.run_service(models_dir, model_name)
    bench.run_floor()
    bench.run_naive(model_name, version_dir)
    meta["wall_s"] = time.perf_counter() - began
    bench.report(meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
