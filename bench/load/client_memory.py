"""How much memory cgan_client needs to take a large /dataset: streamed batches vs whole arrays.

Starts ``python -m service`` on loopback with the tests' tiny model (or ``--models-dir``), then in this
process, for each mode, measures Python's peak allocations with tracemalloc (numpy reports its buffers to
it) and the process's peak RSS over its RSS at the start (ru_maxrss; a high-water mark, so each mode
runs in a fresh process):

* ``iter``: ``Client.iter_dataset(..., batch_size=1024)``, batches dropped as they come (a training loop);
* ``arrays``: ``Client.dataset(...)``, x and y filled in place (the arrays themselves are the floor).

    python -m bench.load.client_memory                 # 100,000 images (per_label 10,000 x 10 classes)
    python -m bench.load.client_memory --per-label 100 # quick
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc

from bench.harness import fake_models_dir, machine, markdown_table, service_server


def measure(url: str, mode: str, per_label: int) -> dict[str, float]:
    from cgan_client import Client

    # Growth of the high-water mark over the resident set at the start (not over the start's high-water
    # mark, which imports may have pushed above what is resident now).
    with open("/proc/self/statm") as statm:
        base_rss = int(statm.read().split()[1]) * resource.getpagesize() / 1024
    tracemalloc.start()
    start = time.perf_counter()
    with Client(url, timeout=120) as api:
        if mode == "iter":
            images = sum(len(x) for x, _ in api.iter_dataset(per_label, seed=0, batch_size=1024))
        else:
            x, y = api.dataset(per_label, seed=0)
            images = len(x)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024  # KiB on Linux
    return {"images": images, "tracemalloc_peak_mb": peak / 1e6, "rss_growth_mb": rss, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-label", type=int, default=10_000)
    parser.add_argument("--models-dir", default=None)
    parser.add_argument("--_child", nargs=2, metavar=("URL", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        print(json.dumps(measure(args._child[0], args._child[1], args.per_label)))
        return
    models_dir, model = (args.models_dir, None) if args.models_dir else fake_models_dir()
    rows = []
    with service_server(models_dir, model, env={"MAX_PER_LABEL": str(max(args.per_label, 10_000))}) as server:
        server.wait_ready()
        for mode in ("iter", "arrays"):
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.load.client_memory",
                    "--per-label",
                    str(args.per_label),
                    "--_child",
                    server.url,
                    mode,
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            pixels_mb = result["images"] * 28 * 28 / 1e6
            rows.append(
                [
                    mode,
                    f"{result['images']:,}",
                    f"{pixels_mb:.1f}",
                    f"{result['tracemalloc_peak_mb']:.1f}",
                    f"{result['rss_growth_mb']:.1f}",
                    f"{result['seconds']:.1f}",
                ]
            )
    print(machine())
    print(markdown_table(["mode", "images", "pixels MB", "tracemalloc peak MB", "RSS growth MB", "s"], rows))


if __name__ == "__main__":
    main()
