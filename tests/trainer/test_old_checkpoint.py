"""A run written by older code resumes: its ``run.json`` (a flat recipe with every variant's knobs) and its
checkpoint (variables keyed by Keras path) load into today's model, and training goes on to the same
weights the older code reached.

``fixtures/old-run/`` is a tiny InfoGAN conv run (style codes, class head, conditional BatchNorm, EMA, LeCam
anchors: most of what a checkpoint can hold) trained for 2 steps by the code before the variants' training
step was written once (issue #33); ``old-run-step4.json`` is what that code reached when resuming it to
step 4. Regenerate only with the code a change must stay compatible with:
``python -m tests.trainer.test_old_checkpoint --write``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).with_name("fixtures")
OLD_RUN = FIXTURES / "old-run"
STEP4 = FIXTURES / "old-run-step4.json"
NAME = "old-run"
FIRST, THEN = 2, 4


def _copy(work: Path) -> Path:
    """The fixture run under ``work``, its ``run.json`` pointing there."""
    run = work / NAME
    shutil.copytree(OLD_RUN, run)
    saved = json.loads((run / "run.json").read_text())
    saved["work_dir"], saved["out"] = str(work), str(work / "models")
    (run / "run.json").write_text(json.dumps(saved, indent=2))
    return run


def _resume(work: Path, steps: int) -> int:
    from trainer.cli import main

    argv = ["train", "--resume", "--name", NAME, "--work-dir", str(work), "--steps", str(steps)]
    return main([*argv, "--no-export", "--quiet"])


def _digest(variables) -> str:
    import hashlib

    digest = hashlib.sha256()
    for v in variables:
        digest.update(np.ascontiguousarray(np.asarray(v.numpy())).tobytes())
    return digest.hexdigest()


def test_an_old_run_loads_every_variable_of_its_checkpoint(tmp_path):
    pytest.importorskip("tensorflow")
    from trainer.train import load_run

    run = _copy(tmp_path)
    config, _, gan, meta = load_run(run)
    assert (config.variant, config.arch, meta["step"]) == ("infogan", "conv", FIRST)
    with np.load(run / "checkpoints" / f"ckpt-{FIRST:08d}.npz") as stored:
        values = [stored[f"v{i:04d}"] for i in range(len(gan.checkpoint_variables()))]
    for variable, value in zip(gan.checkpoint_variables(), values, strict=True):
        np.testing.assert_array_equal(np.asarray(variable.numpy()), value)


def test_an_old_run_resumes_to_the_weights_the_old_code_reached(tmp_path, capsys):
    pytest.importorskip("tensorflow")
    from tests.trainer.test_numerics import machine
    from trainer.train import load_run

    run = _copy(tmp_path)
    assert _resume(tmp_path, THEN) == 0
    assert f"trained {NAME}: {THEN} steps" in capsys.readouterr().out
    assert sorted(p.name for p in (run / "checkpoints").iterdir())[-1] == f"ckpt-{THEN:08d}.npz"
    saved = json.loads((run / "run.json").read_text())
    assert saved["variant"] == "infogan" and saved["recipe"]["num_codes"] == 2  # the run's recipe is kept
    _, _, gan, meta = load_run(run)
    assert meta["step"] == THEN
    want = json.loads(STEP4.read_text())
    if machine() == want["machine"]:
        assert _digest(gan.checkpoint_variables()) == want["sha256"]


def write() -> None:
    """The fixture, by the code of this tree: 2 steps, then the step-4 digest of resuming it."""
    import tempfile

    from tests.trainer.test_numerics import machine, small_run
    from trainer.train import load_run, train

    changes = ["g_width=4", "d_width=4", "compute_dtype=float32", "lecam_weight=0.1"]
    settings = dict(steps=FIRST, batch_size=8, latent_dim=4, seed=3, log_every=1, jit_compile=False)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        config = small_run(NAME, "infogan", "conv", changes, work, **settings)
        train(config)
        shutil.rmtree(OLD_RUN, ignore_errors=True)
        OLD_RUN.mkdir(parents=True)
        shutil.copy(config.run_dir / "run.json", OLD_RUN / "run.json")
        shutil.copy(config.run_dir / "history.csv", OLD_RUN / "history.csv")
        shutil.copytree(config.run_dir / "checkpoints", OLD_RUN / "checkpoints")
        # What resuming it reaches, from a fresh copy, the way a user resumes.
        resumed = Path(work) / "resumed"
        resumed.mkdir()
        _copy(resumed)
        assert _resume(resumed, THEN) == 0
        _, _, gan, _ = load_run(resumed / NAME)
        STEP4.write_text(
            json.dumps({"machine": machine(), "sha256": _digest(gan.checkpoint_variables())}) + "\n"
        )


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.trainer.test_old_checkpoint --write")
    write()
