"""The soak drill (bench/drills/soak_drill.py) in its CI form: 30 s of mixed load while versions are
published and removed. Not a speed test: it asserts what the drill asserts (no unexpected answer, health
throughout, bounded RSS, a clean SIGTERM exit), and that the load did what it is for (overload refusals,
clients that left counted as 499). Load goes to 127.0.0.1 only."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def test_soak_drill_short_form(tmp_path: Path) -> None:
    env = {**os.environ, "BENCH_CACHE": str(tmp_path / "bench-cache")}  # server logs land here
    argv = [sys.executable, "-m", "bench.drills.soak_drill", "--minutes", "0.5", "--window", "10"]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    summary = re.search(
        r"^soak: requests=(\d+) unexpected=0 429=(\d+) 503=\d+ client_closed_499=(\d+) ", output, re.M
    )
    assert summary, output
    requests, refused, closed = (int(g) for g in summary.groups())
    assert requests > 100 and refused > 0 and closed > 0, output
    assert "soak drill: PASSED" in proc.stdout
