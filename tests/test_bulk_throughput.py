"""bench/load/bulk_throughput.py (issue #30, item 5): its goal rows from made-up figures, and its smoke form
end to end on the tests' tiny model (not a speed test: every path must run and be reported)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.load.bulk_throughput import goals

REPO = Path(__file__).resolve().parents[1]


def test_each_path_is_held_by_its_best_row_to_the_raw_models_best_batch():
    raw = {"images_per_s": 1000.0, "batch": 1024}
    rows = [
        {"path": "/dataset npz", "requests": 1, "images_per_s": 850.0},
        {"path": "/dataset npz", "requests": 2, "images_per_s": 950.0},
        {"path": "cgan-bulk --all (tar)", "requests": 1, "images_per_s": 600.0},
    ]
    found = {g[0].split(" (")[0]: g[1:] for g in goals(raw, rows)}
    assert found["bulk: /dataset npz"] == ["0.95x", ">= 0.9x", "pass"]
    assert found["bulk: cgan-bulk --all"] == ["0.60x", ">= 0.9x", "miss"]


@pytest.mark.slow
def test_the_smoke_form_measures_every_path(tmp_path: Path) -> None:
    env = {**os.environ, "BENCH_CACHE": str(tmp_path / "cache")}
    argv = [sys.executable, "-m", "bench.load.bulk_throughput", "--fake", "--per-label", "20"]
    argv += ["--json-name", "bulk_smoke.json"]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    saved = json.loads((REPO / "bench" / "results" / "bulk_smoke.json").read_text())
    paths = {(r["path"], r["requests"]) for r in saved["rows"]}
    assert {("/dataset npz", 1), ("/dataset tar", 1), ("cgan-bulk --all (tar)", 1)} <= paths
    assert all(r["images_per_s"] > 0 for r in saved["rows"]) and saved["raw"]["images_per_s"] > 0
    assert len(saved["goals"]) == 3
