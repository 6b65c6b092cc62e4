"""Issue #17 item 9, resume: a checkpoint from other code is refused by name, never treated as corrupt and
overwritten; a corrupt newest checkpoint falls back to an older intact one, and says so."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from trainer import checkpoint  # noqa: E402
from trainer.checkpoint import CheckpointError  # noqa: E402

TINY = [
    "--variant", "cgan", "--arch", "dense", "--batch-size", "8", "--latent-dim", "8", "--no-jit", "--quiet",
]  # fmt: skip


def variables(*specs):
    """Variables whose ``.path`` is each spec's name (``scope/name``), valued by their position."""
    made = []
    for i, (path, shape) in enumerate(specs):
        scope, _, name = path.rpartition("/")
        with keras.name_scope(scope):
            made.append(keras.Variable(np.full(shape, i, "float32"), name=name))
        assert made[-1].path == path
    return made


BASE = (("dense/kernel", (3, 2)), ("dense/bias", (2,)))


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_added_variable_is_refused_by_name_and_nothing_is_touched(tmp_path):
    checkpoint.save(tmp_path, 10, variables(*BASE), {"step": 10, "wall_seconds": 1.0})
    before = snapshot(tmp_path)
    model = variables(*BASE, ("extra_gate/kernel", (4,)))
    with pytest.raises(CheckpointError) as err:
        checkpoint.load_latest(tmp_path, model)
    message = str(err.value)
    assert "\n" not in message and "ckpt-00000010.npz" in message
    assert "extra_gate/kernel" in message and "lacks" in message
    assert snapshot(tmp_path) == before
    assert model[0].numpy().tolist() == [[0, 0], [0, 0], [0, 0]]  # nothing half-restored


def test_removed_variable_is_named(tmp_path):
    checkpoint.save(tmp_path, 4, variables(*BASE, ("old_head/bias", (5,))), {"step": 4, "wall_seconds": 0})
    with pytest.raises(CheckpointError, match=r"old_head/bias \[5\]"):
        checkpoint.load_latest(tmp_path, variables(*BASE))


def test_changed_shape_is_named(tmp_path):
    checkpoint.save(tmp_path, 4, variables(*BASE), {"step": 4, "wall_seconds": 0})
    with pytest.raises(CheckpointError, match=r"dense/kernel \[3, 2\].*dense/kernel \[3, 7\]"):
        checkpoint.load_latest(tmp_path, variables(("dense/kernel", (3, 7)), BASE[1]))


def test_same_code_rebuilt_in_one_process_still_resumes(tmp_path):
    """Keras numbers layers per process (dense, dense_1, ...): a rebuilt model must still match."""
    checkpoint.save(tmp_path, 4, variables(*BASE), {"step": 4, "wall_seconds": 2.5})
    model = variables(("dense_7/kernel", (3, 2)), ("dense_7/bias", (2,)))
    assert checkpoint.load_latest(tmp_path, model) == {"step": 4, "wall_seconds": 2.5}
    assert model[1].numpy().tolist() == [1, 1]


def test_checkpoint_without_names_from_older_code_still_loads(tmp_path):
    import json

    arrays = {"v0000": np.ones((3, 2), "float32"), "v0001": np.full(2, 2, "float32")}
    arrays["meta"] = np.frombuffer(json.dumps({"step": 3, "wall_seconds": 0}).encode(), np.uint8)
    np.savez(tmp_path / "ckpt-00000003.npz", **arrays)
    model = variables(*BASE)
    assert checkpoint.load_latest(tmp_path, model)["step"] == 3
    assert model[1].numpy().tolist() == [2, 2]
    with pytest.raises(CheckpointError, match="holds 2 variables, the model has 3"):
        checkpoint.load_latest(tmp_path, variables(*BASE, ("x/y", (1,))))


def test_corrupt_newest_falls_back_to_an_older_intact_one_and_says_so(tmp_path, caplog):
    checkpoint.save(tmp_path, 5, variables(*BASE), {"step": 5, "wall_seconds": 0})
    checkpoint.save(tmp_path, 10, variables(*BASE), {"step": 10, "wall_seconds": 0})
    torn = tmp_path / "ckpt-00000010.npz"
    torn.write_bytes(torn.read_bytes()[:300])
    with caplog.at_level(logging.WARNING, logger="trainer.checkpoint"):
        meta = checkpoint.load_latest(tmp_path, variables(*BASE), set_aside=True)
    assert meta["step"] == 5
    # The torn file is kept (under a name no loader picks) rather than silently overwritten later.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000005.npz", "ckpt-00000010.npz.corrupt"]
    assert "ckpt-00000010.npz" in caplog.text and "ckpt-00000010.npz.corrupt" in caplog.text


def test_only_corrupt_checkpoints_is_an_error_not_a_fresh_start(tmp_path):
    (tmp_path / "ckpt-00000010.npz").write_bytes(b"PK\x03\x04 torn")
    before = snapshot(tmp_path)
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        checkpoint.load_latest(tmp_path, variables(*BASE), set_aside=True)
    assert snapshot(tmp_path) == before


def test_resume_after_a_code_change_refuses_in_one_line_and_keeps_the_old_run(tmp_path, monkeypatch, capsys):
    """The end-to-end form of the issue: train, change the code (one more variable), --resume."""
    from trainer.cli import main
    from trainer.variants.base import ConditionalGAN

    common = [*TINY, "--name", "r", "--no-export", "--work-dir", str(tmp_path / "runs")]
    common += ["--checkpoint-every", "2", "--sample-every", "2", "--log-every", "2"]
    assert main(["train", *common, "--steps", "2"]) == 0
    run = tmp_path / "runs" / "r"
    ckpts, before, run_json = (
        run / "checkpoints",
        snapshot(run / "checkpoints"),
        (run / "run.json").read_bytes(),
    )
    assert list(before) == ["ckpt-00000002.npz"]
    capsys.readouterr()

    original = ConditionalGAN.checkpoint_variables
    added = keras.Variable(np.zeros(4, "float32"), name="new_gate")
    monkeypatch.setattr(ConditionalGAN, "checkpoint_variables", lambda self: [*original(self), added])
    assert main(["train", *common, "--steps", "4", "--resume"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line.startswith("cgan-train train: error:") and "new_gate" in line and "ckpt-00000002.npz" in line
    assert snapshot(ckpts) == before and (run / "run.json").read_bytes() == run_json
