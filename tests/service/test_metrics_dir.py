"""The metrics directory a service's processes share is its own (issue #32 row 11): made inside the
PROMETHEUS_MULTIPROC_DIR it is given, removed with only the samples written there; the live check of two
services on one directory is tests/service/test_workers.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cgan_testing.live_server import REPO, free_port
from service.metrics import private_dir, shared_dir


def test_a_private_directory_inside_the_given_one_removed_with_only_its_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "notes.db").write_text("not ours")
    with private_dir(always=False) as own:
        assert own is not None and Path(own).parent == tmp_path and Path(own).name.startswith("cgan-metrics-")
        assert shared_dir() == own  # what the metrics built now (and the workers started now) write to
        (Path(own) / "counter_1.db").write_text("samples")
    assert shared_dir() == str(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_a_file_someone_else_put_in_it_is_left_with_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with private_dir(always=False) as own:
        assert own is not None
        (Path(own) / "gauge_livesum_7.db").write_text("samples")
        (Path(own) / "README").write_text("not ours")
    assert sorted(p.name for p in Path(own).iterdir()) == ["README"]


def test_none_given_a_lone_process_uses_none_and_a_supervisor_a_temporary_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with private_dir(always=False) as none:
        assert none is None and shared_dir() is None
    with private_dir(always=True) as made:
        assert made is not None and shared_dir() == made and Path(made).name.startswith("cgan-metrics-")
    assert shared_dir() is None and not Path(made).exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_metrics_directory_that_cannot_be_made_is_one_line_and_non_zero(
    tmp_path: Path, workers: str
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "BUNDLED_MODELS": "0", "GRPC_PORT": str(free_port())}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "missing")
    done = subprocess.run(
        [sys.executable, "-m", "service", "--workers", workers, "--port", str(free_port())],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    lines = (done.stderr or done.stdout).strip().splitlines()
    assert "cannot make a metrics directory in PROMETHEUS_MULTIPROC_DIR" in lines[-1], done.stderr
    assert "Traceback" not in done.stderr
