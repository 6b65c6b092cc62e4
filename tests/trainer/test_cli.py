"""The command line: bad input is one line and exit 2; a real run trains, checkpoints, resumes, exports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cgan_contract as contract
from trainer.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--variant", "cgan", "--arch", "dense", "--batch-size", "8", "--latent-dim", "8", "--no-jit", "--quiet",
]  # fmt: skip


def run_cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "trainer", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--variant", "wgan"], "invalid choice: 'wgan'"),
        (["train", "--model", "wgan"], "invalid choice: 'wgan'"),
        (["train", "--arch", "resnet"], "invalid choice: 'resnet'"),
        (["train", "--dataset", "cifar"], "invalid choice: 'cifar'"),
        (["train", "--steps", "0"], "must be positive"),
        (["train", "--batch-size", "-4"], "must be positive"),
        (["train", "--steps", "ten"], "expected an integer"),
    ],
)
def test_flag_errors_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_model_is_a_deprecated_alias_of_variant(capsys):
    from trainer.cli import build_parser, make_config

    parser = build_parser()
    old = parser.parse_args(["train", "--model", "acgan", "--arch", "dense"])
    assert capsys.readouterr().err.splitlines() == ["cgan-train train: --model is deprecated; use --variant"]
    new = parser.parse_args(["train", "--variant", "acgan", "--arch", "dense"])
    assert capsys.readouterr().err == ""
    assert old == new and make_config(old) == make_config(new)
    assert make_config(old).name == "mnist-5k-acgan-dense"


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--dataset", "idx", "--data-dir", "/nonexistent"], "does not exist"),
        (["--dataset", "idx"], "needs --data-dir"),
        (["--name", "../escape"], "--name"),
        (["--recipe", "nope=1"], "--recipe 'nope=1': expected FIELD=VALUE"),
        (["--variant", "ebgan", "--recipe", "lecam_weight=0.3"], "EBGAN's scores energies"),
    ],
)
def test_data_and_name_errors_are_one_line(tmp_path, extra, message):
    result = run_cli("train", *TINY, "--steps", "2", "--out", str(tmp_path / "m"), *extra, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert message in lines[-1] and lines[-1].startswith("cgan-train train: error:")
    assert "Traceback" not in result.stderr


def test_label_outside_class_range_is_one_line(tmp_path):
    from tests.trainer.test_data import make_idx_dir

    make_idx_dir(tmp_path / "d", max_label=11)
    result = run_cli(
        "train",
        *TINY,
        "--steps",
        "2",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        str(tmp_path / "d"),
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "outside 0..9" in result.stderr and "Traceback" not in result.stderr


def test_unwritable_out_is_one_line_and_nothing_is_published(tmp_path):
    blocker = tmp_path / "models"
    blocker.write_text("a file where the models directory should be")
    result = run_cli("train", *TINY, "--steps", "2", "--out", str(blocker), cwd=tmp_path)
    assert result.returncode == 2 and "cannot create" in result.stderr
    assert "Traceback" not in result.stderr


def test_train_writes_samples_history_curves_and_exports(tmp_path):
    result = run_cli(
        "train",
        *TINY,
        "--steps",
        "6",
        "--sample-every",
        "3",
        "--checkpoint-every",
        "3",
        "--log-every",
        "2",
        "--name",
        "cli",
        "--out",
        "models",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    run = tmp_path / "runs" / "cli"
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-00000003.png", "step-00000006.png"]
    history = (run / "history.csv").read_text().splitlines()
    assert history[0].startswith("step,d_loss,g_loss") and len(history) == 4  # steps 2, 4, 6
    version = tmp_path / "models" / "cli" / "1"
    assert {"model.onnx", "model.json", "samples.png", "curves.png", "history.csv"} <= {
        p.name for p in version.iterdir()
    }
    card = contract.read_card(version)
    assert card.training.steps == 6 and card.training.batch_size == 8 and card.training.images_per_second > 0
    from PIL import Image

    grid = Image.open(run / "samples.png")
    assert grid.size == (10 * 28 * 2, 10 * 28 * 2)  # 10 classes x 10 fixed noises, drawn at 2x


def test_sigkill_then_resume_continues_at_the_last_checkpoint(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = [
        sys.executable,
        "-m",
        "trainer",
        "train",
        *TINY,
        "--steps",
        "100000",
        "--checkpoint-every",
        "5",
        "--log-every",
        "5",
        "--sample-every",
        "1000",
        "--name",
        "killed",
        "--no-export",
    ]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpts = tmp_path / "runs" / "killed" / "checkpoints"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(ckpts.glob("ckpt-*.npz"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = sorted(ckpts.glob("ckpt-*.npz"))
    assert saved, "no checkpoint was written before the kill"
    newest = int(saved[-1].stem.split("-")[1])

    # A kill during a checkpoint write leaves a temp file and, at worst, a torn newest file.
    (ckpts / f"ckpt-{newest + 5:08d}.npz.tmp").write_bytes(b"half a checkpoint")
    torn = ckpts / f"ckpt-{newest + 5:08d}.npz"
    torn.write_bytes(saved[-1].read_bytes()[:1000])

    result = run_cli(
        "train",
        *TINY,
        "--steps",
        str(newest + 10),
        "--checkpoint-every",
        "5",
        "--log-every",
        "5",
        "--name",
        "killed",
        "--resume",
        "--no-export",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert f"resumed killed at step {newest}" in result.stderr
    assert f"trained killed: {newest + 10} steps" in result.stdout
    assert not list(ckpts.glob("*.tmp"))
    steps = [
        float(line.split(",")[0]) for line in (ckpts.parent / "history.csv").read_text().splitlines()[1:]
    ]
    assert steps == sorted(steps) and steps[-1] == newest + 10


def test_export_command_publishes_a_run_trained_without_export(tmp_path):
    trained = run_cli("train", *TINY, "--steps", "2", "--name", "later", "--no-export", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert not (tmp_path / "models").exists()
    exported = run_cli("export", "runs/later", "--out", "models", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    card = contract.read_card(tmp_path / "models" / "later" / "1")
    assert card.training.steps == 2 and card.variant == "cgan"
    missing = run_cli("export", "runs/nothing", "--out", "models", cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_xla_path_trains_a_step_count_that_is_not_a_multiple_of_the_block(tmp_path):
    from trainer.train import BLOCK

    steps = BLOCK + 3
    args = [a for a in TINY if a != "--no-jit"]
    result = run_cli(
        "train",
        *args,
        "--steps",
        str(steps),
        "--log-every",
        "1",
        "--no-export",
        "--name",
        "xla",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert f"trained xla: {steps} steps" in result.stdout
    rows = (tmp_path / "runs" / "xla" / "history.csv").read_text().splitlines()[1:]
    assert [int(float(r.split(",")[0])) for r in rows] == list(range(1, steps + 1))


@pytest.mark.parametrize(
    "flags,augmentation,real_per_class",
    [
        ([], True, None),
        (["--no-augmentation"], False, None),
        (["--augmentation-real-per-class", "1000"], True, 1000),
    ],
)
def test_evaluate_flags_reach_the_evaluation(
    monkeypatch, tmp_path, capsys, flags, augmentation, real_per_class
):
    seen = {}

    def fake_evaluate(model_dir, **options):
        seen.update(options, model_dir=model_dir)
        return None, "the report"

    monkeypatch.setattr("trainer.cli.evaluate", fake_evaluate)
    assert main(["evaluate", str(tmp_path), "--probe-runs", "2", *flags]) == 0
    assert seen["augmentation"] is augmentation and seen["probe_runs"] == 2
    assert seen["augmentation_real_per_class"] == real_per_class
    assert seen["model_dir"] == tmp_path
    assert "the report" in capsys.readouterr().out
