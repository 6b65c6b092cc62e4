"""Service startup time and memory, with a real model.

    python -m bench.load.startup                      # 3 cold starts, cached benchmark model
    python -m bench.load.startup --runs 5 --burst 5 --models-dir DIR --model NAME

Each run starts ``python -m service`` (production settings, 127.0.0.1) and polls ``/readyz`` every 10 ms:
``listening`` is the time from process start to the first HTTP answer, ``ready`` to the first 200 (model
loaded, verified and warmed). Then VmRSS at ready, after ``--idle`` seconds idle, its peak during a wrk
burst (``--burst`` s, 32 connections, bodies rotating n=16 png / n=256 png / n=256 npy), its peak during one
streamed ``/dataset`` of 10k images, and after the load: RSS columns are the server's whole process tree
(supervisor and workers). Goals: ready <= 2 s (median of the runs) and peak RSS <= 200 MB for every
process (a worker; the tree grows with WORKERS), max over the runs. Writes ``bench/results/startup.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.harness import (  # noqa: E402
    ProcSampler,
    fmt,
    have_wrk,
    machine,
    markdown_table,
    resolve_models,
    rss_mb,
    run_wrk,
    service_server,
    tree,
    write_json,
)

READY_GOAL_S = 2.0
RSS_GOAL_MB = 200.0
BURST_BODIES = [
    json.dumps({"label": 9, "n": 16, "format": "png", "seed": 1}),
    json.dumps({"label": 3, "n": 256, "format": "png", "seed": 2}),
    json.dumps({"label": 7, "n": 256, "format": "npy", "seed": 3}),
]


def one_run(models_dir: Path, model: str, args: argparse.Namespace) -> dict:
    import httpx

    server = service_server(models_dir, model, cpus=args.server_cpus)
    with server:
        times = server.wait_ready(interval=0.01, timeout=120)
        sizes = [rss for _, rss in tree(server.pid)]  # one /proc walk for the sum and the largest
        row: dict = {**times, "rss_ready_mb": sum(sizes), "rss_process_mb": max(sizes)}
        time.sleep(args.idle)
        row["rss_idle_mb"] = rss_mb(server.pid)
        if args.burst > 0 and have_wrk():
            with ProcSampler(server.pid, 0.05) as sampler:
                report = run_wrk(
                    server.url + "/generate",
                    bodies=BURST_BODIES,
                    duration=args.burst,
                    connections=32,
                    timeout=10,
                )
            row.update(rss_burst_mb=sampler.rss_max, burst_rps=report["rps"], burst_non2xx=report["non2xx"])
            row["rss_process_mb"] = max(row["rss_process_mb"], sampler.rss_process_max)
        if args.per_label > 0:
            with ProcSampler(server.pid, 0.05) as sampler, httpx.Client(timeout=120) as client:
                payload = {"per_label": args.per_label, "format": "npz", "seed": 0}
                with client.stream("POST", server.url + "/dataset", json=payload) as response:
                    size = sum(len(chunk) for chunk in response.iter_raw(1 << 20))
                    row["dataset_status"] = response.status_code
            row.update(rss_dataset_mb=sampler.rss_max, dataset_bytes=size)
            row["rss_process_mb"] = max(row["rss_process_mb"], sampler.rss_process_max)
        time.sleep(0.5)
        row["rss_after_mb"] = rss_mb(server.pid)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="cold starts (3)")
    p.add_argument("--idle", type=float, default=2.0, help="seconds idle after ready before sampling (2)")
    p.add_argument("--burst", type=float, default=3.0, help="seconds of wrk load per run; 0 skips (3)")
    p.add_argument("--per-label", type=int, default=1000, help="/dataset per_label during the load; 0 skips")
    p.add_argument("--models-dir", help="MODELS_DIR (default: the cached benchmark model)")
    p.add_argument("--model", help="model name in --models-dir")
    p.add_argument("--server-cpus", help="taskset -c list for the service")
    args = p.parse_args(argv)

    models_dir, model, version_dir = resolve_models(args.models_dir, args.model)
    meta = {**machine(), "model": model, "version_dir": str(version_dir), "argv": sys.argv}
    runs = []
    for i in range(args.runs):
        runs.append(one_run(models_dir, model, args))
        print(f"# run {i + 1}: ready in {runs[-1]['ready_s']:.2f}s", file=sys.stderr, flush=True)

    ready = [r["ready_s"] for r in runs]
    peak = max(r["rss_process_mb"] for r in runs)
    goals = [
        {
            "goal": "ready <= 2 s (median)",
            "value": statistics.median(ready),
            "target": READY_GOAL_S,
            "result": "pass" if statistics.median(ready) <= READY_GOAL_S else "miss",
        },
        {
            "goal": "RSS <= 200 MB a process (peak under load)",
            "value": peak,
            "target": RSS_GOAL_MB,
            "result": "pass" if peak <= RSS_GOAL_MB else "miss",
        },
    ]

    print()
    print(
        f"### Startup and memory ({meta['cpus_affinity']} CPUs, {meta.get('cpu_model', '?')}; "
        f"load avg at start {meta['loadavg_at_start'][0]:.1f})"
    )
    print()
    print(
        markdown_table(
            [
                "run",
                "listening s",
                "ready s",
                "RSS ready MB",
                "RSS idle MB",
                "RSS wrk burst MB",
                "burst req/s",
                "RSS /dataset 10k MB",
                "RSS after MB",
                "largest process MB",
            ],
            [
                [
                    i + 1,
                    fmt(r["listening_s"], 2),
                    fmt(r["ready_s"], 2),
                    fmt(r["rss_ready_mb"], 0),
                    fmt(r["rss_idle_mb"], 0),
                    fmt(r.get("rss_burst_mb"), 0),
                    fmt(r.get("burst_rps")),
                    fmt(r.get("rss_dataset_mb"), 0),
                    fmt(r["rss_after_mb"], 0),
                    fmt(r["rss_process_mb"], 0),
                ]
                for i, r in enumerate(runs)
            ],
        )
    )
    print()
    print(
        markdown_table(
            ["goal", "value", "target", "result"],
            [[g["goal"], fmt(g["value"], 2), g["target"], g["result"]] for g in goals],
        )
    )
    path = write_json("startup.json", {"meta": meta, "args": vars(args), "runs": runs, "goals": goals})
    print()
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
