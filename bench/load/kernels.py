"""Raw onnxruntime speed of the generators against the machine's own GEMM limit, FP32 and INT8.

    python -m bench.load.kernels              # bundled conv model + the article's dense one (trains it once)
    python -m bench.load.kernels --quick      # shorter rows, batches 1/16/64/256 (a smoke run)
    python -m bench.load.kernels --model NAME=PATH/model.onnx ...   # other models instead

In one run, one thing at a time in this process:

* **the GEMM limit**: a 2048x2048 float32 MatMul in onnxruntime (one-node graph, default threads) and in
  numpy, best of 3 slices each, in GFLOP/s (2 FLOPs per multiply-add), measured before and after the
  models; the rows use the mean of onnxruntime's two measurements.
* per model: **MACs per image**, counted from the exported graph (MatMul/Gemm, Conv, ConvTranspose; the
  useful multiply-adds, the same for every variant, so a rewrite that adds zero taps is not credited);
  **images/s** at each batch size (one session per variant, default threads, inputs by the seed rule; the
  variants take turns in 3 slices and keep their best, so load from other processes hits them alike);
  **GFLOP/s and % of the GEMM limit** at the best batch. Variants: ``fp32 exported`` (the file as it is),
  ``fp32 rewritten`` (:func:`trainer.onnx_rewrite.optimize`: what exports write from now on; the same as
  the file when it was already rewritten), ``int8`` (:func:`trainer.quantize.quantize` of the rewritten one).
* per variant, onnxruntime's profile at the best batch: the share of time by operator type, which shows
  what keeps a model from the GEMM rate.

Prints markdown tables and writes ``bench/results/kernels.json``. Figures on a shared machine move with
its load: the header prints ``loadavg`` at start and end.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.harness import REPO, bench_model, fmt, machine, markdown_table, write_json  # noqa: E402
from cgan_contract import runner  # noqa: E402

DEFAULT_CONV = REPO / "service" / "bundled" / "mnist-5k-cgan-conv" / "1" / "model.onnx"
GEMM_N = 2048
FULL_BATCHES = [1, 16, 64, 256, 1024]
QUICK_BATCHES = [1, 16, 64, 256]


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def rate(fn, seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after one warm-up call)."""
    fn()
    start, calls = time.perf_counter(), 0
    while (elapsed := time.perf_counter() - start) < seconds or calls == 0:
        fn()
        calls += 1
    return calls / elapsed


def best_rates(fns: dict[str, object], seconds: float, rounds: int = 3) -> dict[str, float]:
    """Best calls/s of each function over ``rounds`` slices taken in turn, so a burst of load from other
    processes costs each contender a slice alike instead of one contender its whole row."""
    best = dict.fromkeys(fns, 0.0)
    for _ in range(rounds):
        for key, fn in fns.items():
            best[key] = max(best[key], rate(fn, seconds / rounds))
    return best


def gemm_limit(seconds: float) -> dict[str, float]:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    n = GEMM_N
    spec = [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in "abc"]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm", spec[:2], spec[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    a, b = (rng.random((n, n), dtype=np.float32) for _ in range(2))
    flops = 2 * n**3
    del onnx
    found = best_rates(
        {"ort": lambda: session.run(None, {"a": a, "b": b}), "numpy": lambda: a @ b}, 2 * seconds
    )
    return {"ort_gflops": flops * found["ort"] / 1e9, "numpy_gflops": flops * found["numpy"] / 1e9}


def count_macs(model_bytes: bytes) -> dict[str, int]:
    """Multiply-adds per image by operator type, from the graph's shapes at batch size 1."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    shapes = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        shapes[value.name] = [
            d.dim_value if d.HasField("dim_value") else 0 for d in value.type.tensor_type.shape.dim
        ]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    macs: dict[str, int] = collections.Counter()
    for node in model.graph.node:
        op = node.op_type
        if op in ("MatMul", "Gemm"):
            a, b = shapes.get(node.input[0], []), shapes.get(node.input[1], [])
            if len(a) >= 1 and len(b) == 2:
                rows = int(np.prod(a[:-1])) if len(a) > 1 else 1
                macs[op] += rows * b[0] * b[1]
        elif op in ("Conv", "ConvTranspose"):
            w = shapes.get(node.input[1], [])
            if len(w) != 4:
                continue
            if op == "Conv":
                out = shapes.get(node.output[0], [])
                if len(out) == 4:
                    macs[op] += out[2] * out[3] * w[0] * w[1] * w[2] * w[3]
            else:
                x = shapes.get(node.input[0], [])
                if len(x) == 4:
                    macs[op] += x[2] * x[3] * w[0] * w[1] * w[2] * w[3]
    return dict(macs)


def feeds(session, batch: int) -> dict[str, np.ndarray]:
    from cgan_contract import INPUT_CODES, INPUT_LABEL, INPUT_NOISE, codes_for_seeds, noise_for_seeds

    seeds = np.arange(batch, dtype=np.uint64)
    out = {}
    for value in session.get_inputs():
        if value.name == INPUT_NOISE:
            out[value.name] = noise_for_seeds(seeds, value.shape[1])
        elif value.name == INPUT_LABEL:
            out[value.name] = np.arange(batch, dtype=np.int64) % 10
        elif value.name == INPUT_CODES:
            out[value.name] = codes_for_seeds(seeds, 1, [(-1.0, 1.0)] * value.shape[1])
    return out


def profile(model_bytes: bytes, batch: int, runs: int) -> list[tuple[str, float]]:
    """Share of onnxruntime's kernel time by operator type over ``runs`` runs at ``batch``."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="kernels-profile-") as tmp:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "p")
        session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        feed = feeds(session, batch)
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    total: dict[str, float] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            total[event["args"].get("op_name", "?")] += event["dur"]
    whole = sum(total.values()) or 1
    return [(op, 100 * t / whole) for op, t in sorted(total.items(), key=lambda kv: -kv[1])]


def measure(blobs: dict[str, bytes], batches: list[int], seconds: float) -> dict[str, dict[int, float]]:
    """Images/s of each variant at each batch size, the variants measured in turn (:func:`best_rates`)."""
    sessions = {name: runner.open_session(blob) for name, blob in blobs.items()}
    found: dict[str, dict[int, float]] = {name: {} for name in blobs}
    for batch in batches:
        calls = {}
        for name, session in sessions.items():
            feed = feeds(session, batch)
            calls[name] = lambda session=session, feed=feed: session.run(None, feed)
        for name, per_second in best_rates(calls, seconds).items():
            found[name][batch] = batch * per_second
    return found


def variants(path: Path) -> tuple[dict[str, bytes], dict[str, int]]:
    import onnx

    from trainer import onnx_rewrite
    from trainer.quantize import quantize

    exported = path.read_bytes()
    rewritten_model, counts = onnx_rewrite.optimize(onnx.load_from_string(exported))
    rewritten = rewritten_model.SerializeToString()
    session = runner.open_session(rewritten)
    inputs = {v.name: v for v in session.get_inputs()}
    latent = inputs["z"].shape[1]
    card = path.parent / "model.json"
    num_classes, code_ranges = 10, None
    if card.is_file():
        import cgan_contract as contract

        parsed = contract.read_card(path.parent)
        num_classes, code_ranges = parsed.num_classes, parsed.code_ranges or None
    int8 = quantize(rewritten, latent, num_classes, code_ranges)
    return {"fp32 exported": exported, "fp32 rewritten": rewritten, "int8": int8}, counts


def default_models() -> dict[str, Path]:
    from bench.harness import _complete_versions

    serve, name = bench_model()  # the article's dense generator, trained once into BENCH_CACHE
    return {
        "conv (bundled default)": DEFAULT_CONV,
        "dense (article)": _complete_versions(serve / name)[-1] / "model.onnx",
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.load.kernels", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter rows and fewer batch sizes")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a model.onnx to measure (repeatable)",
    )
    parser.add_argument(
        "--seconds", type=float, help="seconds per model, variant and batch size (default 3, quick 0.6)"
    )
    parser.add_argument("--no-json", action="store_true", help="do not write bench/results/kernels.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seconds = args.seconds or (0.6 if args.quick else 3.0)
    batches = QUICK_BATCHES if args.quick else FULL_BATCHES
    models: dict[str, Path] = {}
    for item in args.model:
        name, _, path = item.partition("=")
        if not path or not Path(path).is_file():
            raise SystemExit(f"bench.load.kernels: --model wants NAME=PATH to a model.onnx, got {item!r}")
        models[name] = Path(path)
    models = models or default_models()

    meta = machine()
    log(f"GEMM limit ({GEMM_N}x{GEMM_N} float32 MatMul)")
    before = gemm_limit(seconds)
    results = []
    for name, path in models.items():
        log(f"{name}: {path}")
        blobs, counts = variants(path)
        macs = count_macs(blobs["fp32 exported"])
        per_image = sum(macs.values())
        log(f"{name}: {', '.join(blobs)} in turn at batch sizes {batches}")
        measured = measure(blobs, batches, seconds)
        for variant, blob in blobs.items():
            speeds = measured[variant]
            best = max(speeds, key=speeds.get)
            results.append(
                {
                    "model": name,
                    "path": str(path),
                    "variant": variant,
                    "macs_per_image": per_image,
                    "macs_by_op": macs,
                    "rewrites": counts,
                    "images_per_s": speeds,
                    "best_batch": best,
                    "profile": profile(blob, best, 5 if args.quick else 20)[:8],
                }
            )
    after = gemm_limit(seconds)
    limit = (before["ort_gflops"] + after["ort_gflops"]) / 2
    for row in results:
        row["gflops"] = 2 * row["macs_per_image"] * row["images_per_s"][row["best_batch"]] / 1e9
        row["pct_gemm"] = 100 * row["gflops"] / limit

    print(
        f"machine: {meta.get('cpu_model', '?')}, {meta['cpus_affinity']} CPUs; loadavg at start "
        f"{' '.join(f'{x:.2f}' for x in meta['loadavg_at_start'])}, at end "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"GEMM limit: onnxruntime {before['ort_gflops']:.0f} / {after['ort_gflops']:.0f} GFLOP/s "
        f"(before / after the models; rows use {limit:.0f}), numpy {before['numpy_gflops']:.0f} / "
        f"{after['numpy_gflops']:.0f}"
    )
    print()
    headers = [
        "model",
        "variant",
        "MACs/image",
        *[f"img/s b={b}" for b in batches],
        "best b",
        "GFLOP/s",
        "% GEMM",
    ]
    table = [
        [
            r["model"],
            r["variant"],
            f"{r['macs_per_image'] / 1e6:.2f} M",
            *[fmt(r["images_per_s"][b], 0) for b in batches],
            r["best_batch"],
            f"{r['gflops']:.1f}",
            f"{r['pct_gemm']:.0f}%",
        ]
        for r in results
    ]
    print(markdown_table(headers, table))
    print()
    speedups = []
    for name in models:
        rows = {r["variant"]: r for r in results if r["model"] == name}
        base, new, q = rows["fp32 exported"], rows["fp32 rewritten"], rows["int8"]
        best = lambda r: r["images_per_s"][r["best_batch"]]  # noqa: E731
        speedups.append(
            [
                name,
                f"{best(new) / best(base):.2f}x",
                f"{best(q) / best(new):.2f}x",
                json.dumps(new["rewrites"]),
            ]
        )
    print(
        markdown_table(
            ["model", "rewritten / exported", "int8 / fp32 rewritten", "rewrites applied"], speedups
        )
    )
    print()
    print("profile at the best batch (share of onnxruntime kernel time by operator):")
    for r in results:
        top = ", ".join(f"{op} {share:.0f}%" for op, share in r["profile"])
        print(f"- {r['model']} / {r['variant']} (b={r['best_batch']}): {top}")
    if not args.no_json:
        path = write_json(
            "kernels.json", {"machine": meta, "gemm": {"before": before, "after": after}, "rows": results}
        )
        print(f"\nwrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
