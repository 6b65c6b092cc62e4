"""bench/load/peer_load.py in its smoke form, and the naive peer loading every generator the trainer builds.

Not speed tests: the driver must run our server end to end, print its table, and skip a peer whose virtual
environment is absent with a line saying so (CI has none); the naive peer must rebuild every variant x arch
from its ``.keras`` file in a process that never imported the trainer (how the peer app starts).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def test_peer_load_quick_runs_ours_and_skips_absent_peers(tmp_path: Path) -> None:
    env = {**os.environ, "BENCH_CACHE": str(tmp_path / "bench-cache")}
    absent = tmp_path / "no-such-venv"
    argv = [sys.executable, "-m", "bench.load.peer_load", "--fake", "--quick", "--no-naive"]
    argv += ["--duration", "1"]
    argv += ["--kserve-venv", str(absent), "--bentoml-venv", str(absent), "--json-name", "peer_smoke.json"]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    for form in ("png", "npy", "v2-json", "v2-binary"):
        row = re.search(rf"^\| fake \| 16 \| ours \| {form} \| ([\d,.]+) \|.*\| 0/0 \|", proc.stdout, re.M)
        assert row and float(row[1].replace(",", "")) > 0, output
    assert re.search(r"^\| fake \| 16 \| raw \| png \| [\d,.]+ \|", proc.stdout, re.M), output
    for peer in ("kserve-docs", "kserve-best", "bentoml-docs", "bentoml-best"):
        assert f"fake: {peer} skipped: no {absent}" in proc.stdout, output
    assert "Reference only: the empty endpoint" in proc.stdout


def test_naive_peer_loads_every_variant_and_arch(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from trainer import variants
    from trainer.config import recipe_for

    files = []
    for variant in sorted(variants.VARIANTS):
        for arch in ("dense", "conv"):
            recipe = recipe_for(variant, arch)
            spec = variants.Spec(latent_dim=8, num_classes=3, image_shape=(28, 28, 1), arch=arch)
            gan = variants.build(variant, spec, recipe, seed=1)
            path = tmp_path / f"{variant}-{arch}.keras"
            gan.export_generator.save(path)
            files.append(str(path))
    # A fresh process, as the peer app runs: only what bench.peers.naive_app imports is registered.
    script = (
        "import sys, numpy as np\n"
        "from bench.peers.naive_app import feeds, load_generator\n"
        "for path in sys.argv[1:]:\n"
        "    model = load_generator(path)\n"
        "    out = model.predict(feeds(model, np.zeros((2, 8), 'float32'), np.array([0, 2])), verbose=0)\n"
        "    print(path.rsplit('/', 1)[1], out.shape)\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    argv = [sys.executable, "-c", script, *files]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    loaded = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert loaded == {Path(f).name: "(2, 28, 28, 1)" for f in files}
