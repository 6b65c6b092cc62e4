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


def test_soak_drill_with_worker_kills(tmp_path: Path) -> None:
    """Two workers, one SIGKILLed every 10 s: the supervisor replaces it, nothing unexpected is answered, and
    only requests in flight at a kill may break with it."""
    env = {**os.environ, "BENCH_CACHE": str(tmp_path / "bench-cache")}
    argv = [sys.executable, "-m", "bench.drills.soak_drill", "--minutes", "0.5", "--window", "10"]
    argv += ["--workers", "2", "--kill-every", "10"]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert re.search(r"^soak: requests=\d+ unexpected=0 .* rss_slope_mb_per_min=-?[\d.]+$", output, re.M), (
        output
    )
    kills = re.search(
        r"^kills: (\d+) every 10s killed_with_worker=(\d+) in_flight_at_kills=(\d+) workers_at_end=2$",
        output,
        re.M,
    )
    assert kills, output
    count, killed, in_flight = (int(g) for g in kills.groups())
    assert count == 2 and killed <= in_flight, output
    assert "soak drill: PASSED" in proc.stdout
