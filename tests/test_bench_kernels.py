"""bench/load/kernels.py in its quick form on the tests' tiny conv generator: it runs and prints every part.

Not a speed test: it asserts the report's shape (machine, GEMM limit, a row per variant with GFLOP/s and %
of the GEMM limit, the rewrites applied, the profiles), never a figure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cgan_testing.fakes import build_conv_generator

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def test_kernels_bench_quick_form(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(build_conv_generator())
    argv = [sys.executable, "-m", "bench.load.kernels", "--quick", "--seconds", "0.1", "--no-json"]
    argv += ["--model", f"tiny={model}"]
    env = {**os.environ, "BENCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert re.search(r"^machine: .+, \d+ CPUs; loadavg at start", out, re.M), out
    assert re.search(r"^GEMM limit: onnxruntime \d+ / \d+ GFLOP/s .*numpy \d+ / \d+", out, re.M), out
    for variant in ("fp32 exported", "fp32 rewritten", "int8"):
        assert re.search(rf"^\| tiny \| {variant} \| [\d.]+ M \|.*\| [\d.]+ \| \d+% \|$", out, re.M), out
    assert '"subpixel_conv_transpose": 2' in out
    assert re.search(r"^- tiny / int8 \(b=\d+\): .*\d+%", out, re.M), out
    bad = subprocess.run(
        [sys.executable, "-m", "bench.load.kernels", "--model", "nothing"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode != 0 and "NAME=PATH" in bad.stderr
