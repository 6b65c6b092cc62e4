"""The bulk chaos drill (bench/drills/bulk_chaos_drill.py) in its CI form: cgan-bulk SIGKILLed 3 times at
random moments of its writing, each time resumed to completion, must leave the very files (sha256) of an
uninterrupted run, and nothing else."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def test_bulk_chaos_drill_short_form() -> None:
    argv = [sys.executable, "-m", "bench.drills.bulk_chaos_drill", "--kills", "3", "--per-label", "500"]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=180, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert re.search(r"^reference: 9 files, 5000 images, ", output, re.M), output  # 4 tars, 4 manifests, run
    summary = re.search(r"^bulk chaos: rounds=3 killed=(\d) mismatches=0$", output, re.M)
    assert summary and int(summary.group(1)) >= 1, output
    assert output.count("| yes |") == 3 and "bulk chaos drill: PASSED" in proc.stdout, output
