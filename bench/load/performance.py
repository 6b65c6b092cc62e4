"""Issues #19 and #30's figures in one run: the GEMM limit and each model's GFLOP/s (FP32 and INT8), the
service in every form against the raw model and the peers, bulk throughput, training before and after; then
one table of every goal.

    python -m bench.load.performance                  # kernels, peers, bulk, training: ~30 min, 2 idle cores
    python -m bench.load.performance --quick          # the short forms of each (~8 min)
    python -m bench.load.performance --int8 models/mnist-5k-cgan-conv/2   # + that INT8 version's quality gate

Runs ``bench.load.kernels``, ``bench.load.peer_load``, ``bench.load.bulk_throughput`` and
``bench.load.train_throughput --conv-only`` one after the other, each in its own process (their own tables
print as they go), then reads what they wrote under ``bench/results/`` for the summary. ``--int8 DIR`` adds
the gate figures of an INT8 version published by ``cgan-train export --int8`` (its card and its FP32
source's, both filled by ``evaluate``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import cgan_contract as contract
from bench.harness import REPO, RESULTS, fmt, markdown_table

#: The limits an INT8 version must keep against its FP32 source (trainer.int8.QualityGate's defaults).
GATE = {"label accuracy": -0.5, "FID ratio": 10.0, "GAN-train": -0.5}


def run(module: str, *args: str) -> None:
    print(f"\n## python -m {module} {' '.join(args)}\n", flush=True)
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{module} exited {done.returncode}")


def kernel_goals(saved: dict) -> list[list[str]]:
    out = []
    rows = {(r["model"], r["variant"]): r for r in saved["rows"]}
    for (model, variant), row in rows.items():
        if variant == "fp32 exported":
            continue
        what = f"{model}, {variant}: {fmt(row['gflops'])} GFLOP/s at batch {row['best_batch']}"
        if variant == "fp32 rewritten":
            result = "pass" if row["pct_gemm"] >= 70 else "miss"
            out.append([what, f"{row['pct_gemm']:.0f}% of GEMM", ">= 70%", result])
        else:
            ratio = row["gflops"] / rows[(model, "fp32 rewritten")]["gflops"]
            result = "pass" if ratio >= 2 else "miss"
            out.append([what, f"{ratio:.2f}x FP32 ({row['pct_gemm']:.0f}% of GEMM)", ">= 2x", result])
    return out


def training_goals(saved: dict) -> list[list[str]]:
    rows = saved["conv"]
    if not rows[0]["code"].endswith("(before)"):  # no baseline revision in this checkout
        return [["training, default conv recipe: no baseline row", "-", ">= 1.5x", "not measured"]]
    before = rows[0]["images_per_s"]
    now = next(r for r in rows if r["code"].endswith("default"))
    ratio = now["images_per_s"] / before
    what = f"training, default conv recipe: {before:,.0f} -> {now['images_per_s']:,.0f} images/s"
    return [[what, f"{ratio:.2f}x", ">= 1.5x", "pass" if ratio >= 1.5 else "miss"]]


def gate_goals(int8_dir: Path) -> list[list[str]]:
    int8 = contract.read_card(int8_dir)
    fp32 = contract.read_card(int8_dir.parent / str(int8.quantized_from))
    if int8.quality is None or fp32.quality is None:
        raise SystemExit(f"{int8_dir}: the INT8 version or its FP32 source has no evaluated quality")
    a, b = fp32.quality, int8.quality
    changes = {
        "label accuracy": (100 * a.label_accuracy, 100 * b.label_accuracy, "point"),
        "FID ratio": (a.fid_ratio, b.fid_ratio, "%"),
        "GAN-train": (100 * a.gan_train_accuracy, 100 * b.gan_train_accuracy, "point"),
    }
    out = []
    for name, (before, after, unit) in changes.items():
        change = after - before if unit == "point" else 100 * (after / before - 1)
        limit = GATE[name]
        ok = change >= limit if limit < 0 else change <= limit
        what = f"INT8 gate, {int8.name} v{int8.version}: {name} {before:.3g} -> {after:.3g}"
        out.append([what, f"{change:+.2f} {unit}", f"{limit:+g} {unit} at most", "pass" if ok else "miss"])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the short form of each benchmark")
    p.add_argument("--int8", type=Path, metavar="DIR", help="an INT8 version directory: add its gate figures")
    p.add_argument("--report", action="store_true", help="only the summary of the saved results")
    args = p.parse_args(argv)
    if args.int8 is not None and not (args.int8 / contract.CARD_FILE).is_file():
        p.error(f"--int8 {args.int8}: no {contract.CARD_FILE} there")

    quick = ["--quick"] if args.quick else []
    if not args.report:
        run("bench.load.kernels", *quick)
        run("bench.load.peer_load", *quick)
        run("bench.load.bulk_throughput", *quick)
        run("bench.load.train_throughput", "--conv-only", *(["--rounds", "1"] if args.quick else []))

    goals = kernel_goals(json.loads((RESULTS / "kernels.json").read_text()))
    goals += json.loads((RESULTS / "peer_load.json").read_text())["goals"]
    goals += json.loads((RESULTS / "bulk_throughput.json").read_text())["goals"]
    goals += training_goals(json.loads((RESULTS / "train_throughput.json").read_text()))
    if args.int8 is not None:
        goals += gate_goals(args.int8)
    print("\n## Every goal of this run\n")
    print(markdown_table(["goal", "value", "target", "result"], goals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
