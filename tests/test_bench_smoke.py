"""The overload drill (bench/drills/overload_drill.py) in its CI short form, with the tests' tiny model.

Not a speed test: it asserts only what the drill asserts (200 or 429 with Retry-After, health throughout,
bounded RSS, a normal request afterwards, a clean SIGTERM exit). Load goes to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cgan_testing.fakes import write_version

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def test_overload_drill_short_form(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    write_version(models, "digits", 1)
    env = {**os.environ, "BENCH_CACHE": str(tmp_path / "bench-cache")}  # server logs land here
    argv = [sys.executable, "-m", "bench.drills.overload_drill", "--duration", "3"]
    argv += ["--models-dir", str(models)]
    # 200 connections: plenty against MAX_CONCURRENCY=2 + MAX_QUEUE=8, light enough for a 2-core CI runner.
    argv += ["--connections", "200"]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    counts = re.search(r"^counts: 200=(\d+) 429=(\d+) other=0 timeouts=0 socket_errors=0 ", proc.stdout, re.M)
    assert counts, output
    assert int(counts[1]) > 0 and int(counts[2]) > 0, output
    assert "overload drill: PASSED" in proc.stdout
