"""One output directory, one run: cgan-bulk refuses a second run's arguments in an ``--out`` that already
belongs to another run, lets the same run resume, keeps two writers of one shard from clobbering each
other, and never opens what is not a regular file (a FIFO would block it forever)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from service import bulk


def _args(models_dir: Path, out: Path, shards: int, seed: int, *extra: str) -> list[str]:
    return ["--models-dir", str(models_dir), "--model", "digits", "--labels", "7", "2", "--per-label", "3",
            "--shards", str(shards), "--seed", str(seed), "--out", str(out), "--quiet", *extra]  # fmt: skip


def test_another_runs_arguments_in_the_same_out_are_refused(models_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert bulk.main(_args(models_dir, out, 2, 0, "--all")) == 0
    before = sorted(p.name for p in out.iterdir())
    capsys.readouterr()
    assert bulk.main(_args(models_dir, out, 3, 5, "--all")) == 2
    err = capsys.readouterr().err
    assert err.startswith("cgan-bulk: error: ") and err.count("\n") == 1, err
    assert "different run" in err and "seed" in err and "shards" in err, err
    assert sorted(p.name for p in out.iterdir()) == before  # not one file of the second run
    assert not list(out.glob("part-*-of-00003.*"))


def test_another_run_is_refused_before_any_shard_of_it_is_complete(models_dir: Path, tmp_path: Path) -> None:
    # The first run has not finished a single shard (as while it is still writing): the directory is its.
    out = tmp_path / "out"
    first = bulk.plan_job(models_dir, "digits", None, ["7", "2"], 3, 0, 2, out)
    assert bulk.run_shard(first, 0, lambda: bulk.load_model(first, 1))["status"] == "written"
    (out / "part-00000-of-00002.json").unlink()
    (out / "part-00000-of-00002.tar").unlink()
    second = bulk.plan_job(models_dir, "digits", None, ["7", "2"], 3, 5, 3, out)
    with pytest.raises(bulk.BulkError, match="different run .*seed.*shards"):
        bulk.run_shard(second, 0, lambda: pytest.fail("the other run's model was loaded"))


def test_the_same_run_resumes_and_its_batch_may_differ(models_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert bulk.main(_args(models_dir, out, 2, 0, "--shard", "0")) == 0
    assert bulk.main(_args(models_dir, out, 2, 0, "--all", "--batch", "2")) == 0  # batch: not the bytes
    summaries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [s["status"] for s in summaries[1]["shards"]] == ["skipped", "written"]


def test_a_directory_written_before_runs_were_recorded_still_refuses_another(
    models_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert bulk.main(_args(models_dir, out, 2, 0, "--all")) == 0
    (out / bulk.RUN_FILE).unlink()  # as an older cgan-bulk left it: shard manifests only
    assert bulk.main(_args(models_dir, out, 3, 5, "--all")) == 2
    assert not list(out.glob("part-*-of-00003.*"))
    assert bulk.main(_args(models_dir, out, 2, 0, "--all")) == 0  # and it is still that run's


def test_two_writers_of_one_shard_never_clobber_each_other(models_dir: Path, tmp_path: Path) -> None:
    # Writer A (a process) is writing shard 1; writer B starts the same shard meanwhile. B must neither
    # delete A's temporary tar nor write beside it: it waits, then finds the shard complete.
    out = tmp_path / "out"
    args = ["--models-dir", str(models_dir), "--model", "digits", "--per-label", "1000", "--shards", "2",
            "--out", str(out), "--batch", "8", "--threads", "1", "--quiet"]  # fmt: skip
    writer_a = subprocess.Popen(
        [sys.executable, "-m", "service.bulk", *args, "--shard", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    try:
        while not (temps := list(out.glob(".part-00001-of-00002.tar.*.tmp"))):
            assert writer_a.poll() is None, "writer A finished before writer B could start"
            assert time.monotonic() < deadline, "no temporary tar appeared"
            time.sleep(0.01)  # polling the file system; there is no event to wait on
        job = bulk.plan_job(models_dir, "digits", None, None, 1000, 0, 2, out, batch=8)
        result: dict = {}

        def writer_b() -> None:
            try:
                result["summary"] = bulk.run_shard(job, 1, lambda: pytest.fail("B loaded the model"))
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                result["error"] = e

        thread = threading.Thread(target=writer_b)
        thread.start()
        thread.join(1.0)
        # A's temporary tar is still there, or A renamed it into place (a fast A may be done by now).
        finished = (out / "part-00001-of-00002.tar").exists() or writer_a.poll() is not None
        assert all(t.exists() for t in temps) or finished, "B removed A's temporary tar"
        _, err = writer_a.communicate(timeout=300)
        assert writer_a.returncode == 0, err.decode()
        thread.join(60)
        assert not thread.is_alive()
    finally:
        writer_a.kill()
        writer_a.wait(10)
    assert "error" not in result, result
    assert result["summary"]["status"] == "skipped"
    assert bulk.verified_manifest(job, 1) is not None
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary or lock file left


def _fifo_tar(out: Path) -> None:
    tar, manifest = out / "part-00001-of-00002.tar", out / "part-00001-of-00002.json"
    record = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**record, "tar_bytes": 0}))
    tar.unlink()
    os.mkfifo(tar)


def _fifo_manifest(out: Path) -> None:
    manifest = out / "part-00001-of-00002.json"
    manifest.unlink()
    os.mkfifo(manifest)


@pytest.mark.parametrize("damage", [_fifo_tar, _fifo_manifest], ids=["fifo-tar", "fifo-manifest"])
def test_a_fifo_in_place_of_a_shard_file_is_redone_not_opened(
    models_dir: Path, tmp_path: Path, damage
) -> None:
    out = tmp_path / "out"
    assert bulk.main(_args(models_dir, out, 2, 0, "--all")) == 0
    tar = out / "part-00001-of-00002.tar"
    first = bulk.file_sha256(tar)
    damage(out)
    # In a process of its own: opening a FIFO for reading blocks until a writer comes, forever here.
    done = subprocess.run(
        [sys.executable, "-m", "service.bulk", *_args(models_dir, out, 2, 0, "--all")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert [s["status"] for s in summary["shards"]] == ["skipped", "written"]
    assert tar.is_file() and bulk.file_sha256(tar) == first
    job = bulk.plan_job(models_dir, "digits", None, ["7", "2"], 3, 0, 2, out)
    assert bulk.verified_manifest(job, 1) is not None


def test_file_sha256_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    outcome: dict = {}

    def digest() -> None:
        try:
            outcome["sha256"] = bulk.file_sha256(fifo)
        except OSError as e:
            outcome["error"] = e

    thread = threading.Thread(target=digest)
    thread.start()
    thread.join(10)
    if thread.is_alive():  # blocked opening the FIFO: a writer that closes at once lets it go
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(10)
        pytest.fail("file_sha256 blocked on a FIFO")
    assert "not a regular file" in str(outcome.get("error")), outcome
