"""Bulk chaos drill (issue #32): ``cgan-bulk`` SIGKILLed at random moments, then resumed, writes the bytes
an uninterrupted run writes.

    python -m bench.drills.bulk_chaos_drill             # 20 kills (~2-3 min on 2 cores)
    python -m bench.drills.bulk_chaos_drill --kills 3 --per-label 500   # the CI short form (~30 s)

Publishes the tests' tiny ONNX model (no TensorFlow) in a temporary MODELS_DIR, and runs
``python -m service.bulk --shards 4 --all`` uninterrupted into ``A``: the reference; then once more into
``A2`` (warm caches, as the rounds run; it must equal A) for its duration T and W, when its first file
appeared (before that it imports and loads the model: a kill there leaves nothing
to resume). Then, ``--kills`` times: the same command into a fresh ``B``, SIGKILLed after a random delay
in [W, T) (whatever it is doing then: writing a tar, fsyncing, renaming, writing a manifest, between two
shards), then the same command again, to completion. After each resume, B must hold exactly A's files
(no temporary file or lock left behind), and every shard tar and manifest must have A's sha256.

Prints a table (round, kill delay, shards complete and temporary files at the kill, shards the resume
wrote / skipped, match) and ``bulk chaos drill: PASSED`` or ``FAILED`` (exit 1): a resume that did not exit
0, a file of B that differs from A's or is missing, or a file A does not have.

Not on Ray: a Ray run starts a cluster (``cgan_testing.ray_cluster``: node processes, ~10-20 s on 2 busy
cores) and its workers load the model on every call, so 20 rounds would take many minutes; and a shard
task on Ray is the same :func:`service.bulk.shards.run_shard` this drill kills, so what a kill leaves
behind, and how a resume treats it, is the same code. Killing a Ray worker would drill Ray's task retry.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.harness import REPO, markdown_table, verdict  # noqa: E402
from cgan_testing.fakes import write_version  # noqa: E402


def command(models: Path, out: Path, per_label: int) -> list[str]:
    return [
        sys.executable, "-m", "service.bulk", "--models-dir", str(models), "--model", "digits",
        "--per-label", str(per_label), "--shards", "4", "--all", "--threads", "1", "--quiet",
        "--out", str(out),
    ]  # fmt: skip


def digests(out: Path) -> dict[str, str]:
    """sha256 of every file in ``out`` (hidden ones too: a temporary file or a lock left behind shows)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir()) if p.is_file()}


def run(argv: list[str]) -> tuple[int, dict]:
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, (json.loads(lines[-1]) if lines else {"stderr": proc.stderr[-500:]})


def reference(argv: list[str], out: Path) -> tuple[int, float, float]:
    """Run to completion; (exit status, seconds until ``out`` held a file, seconds in all)."""
    began = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = None
    while proc.poll() is None:
        if first is None and out.exists() and any(out.iterdir()):
            first = time.perf_counter() - began
        time.sleep(0.01)
    total = time.perf_counter() - began
    return proc.returncode, first if first is not None else 0.0, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--per-label", type=int, default=2000, help="images per label (10 labels)")
    parser.add_argument("--seed", type=int, default=32, help="of the kill delays")
    args = parser.parse_args(argv)
    if args.kills < 1 or args.per_label < 1:
        parser.error("--kills and --per-label must be 1 or more")
    rng = random.Random(args.seed)

    rows, failures = [], []
    with tempfile.TemporaryDirectory(prefix="bulk-chaos-") as tmp:
        root = Path(tmp)
        models = root / "models"
        write_version(models, "digits", 1)
        status, _, _ = reference(command(models, root / "A", args.per_label), root / "A")
        again, writing, typical = reference(command(models, root / "A2", args.per_label), root / "A2")
        expected = digests(root / "A")
        if status != 0 or again != 0 or digests(root / "A2") != expected:
            print(f"FAIL: the uninterrupted runs exited {status} and {again}, or wrote different files")
            print("bulk chaos drill: FAILED")
            return 1
        print(
            f"reference: {len(expected)} files, {10 * args.per_label} images, first file at {writing:.1f}s, "
            f"done in {typical:.1f}s"
        )

        for round_ in range(1, args.kills + 1):
            out = root / "B"
            shutil.rmtree(out, ignore_errors=True)
            delay = rng.uniform(writing, typical)
            proc = subprocess.Popen(
                command(models, out, args.per_label),
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                proc.wait(delay)
                finished_first = True
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                finished_first = False
            names = [p.name for p in out.iterdir()] if out.exists() else []
            complete = sum(1 for n in names if n.startswith("part-") and n.endswith(".json"))
            temps = sum(1 for n in names if n.endswith(".tmp"))
            status, resumed = run(command(models, out, args.per_label))
            shards = resumed.get("shards", [])
            got = digests(out) if out.exists() else {}
            differ = sorted(n for n in expected.keys() | got.keys() if expected.get(n) != got.get(n))
            rows.append(
                [
                    round_,
                    f"{delay:.2f}" + (" (done first)" if finished_first else ""),
                    complete,
                    temps,
                    sum(1 for s in shards if s["status"] == "written"),
                    sum(1 for s in shards if s["status"] != "written"),
                    "yes" if status == 0 and not differ else "NO",
                ]
            )
            if status != 0:
                failures.append(f"round {round_}: the resume exited {status}: {resumed}")
            if differ:
                failures.append(f"round {round_}: files that differ from A's, are missing or extra: {differ}")

    headers = ["round", "killed after s", "shards complete", "temp files", "resume wrote", "skipped", "= A"]
    print(markdown_table(headers, rows))
    killed = sum(1 for r in rows if "done first" not in str(r[1]))
    print(
        f"bulk chaos: rounds={len(rows)} killed={killed} mismatches={sum(1 for r in rows if r[-1] != 'yes')}"
    )
    return verdict("bulk chaos drill", failures)


if __name__ == "__main__":
    sys.exit(main())
