"""The sharded bulk generator: shard layout, equality with /dataset, resume, and its command line."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from service import bulk
from service.bulk import BulkError, BulkJob


def _members(tar: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(tar) as archive:
        return [(m.name, archive.extractfile(m).read()) for m in archive.getmembers()]  # type: ignore[union-attr]


def _job(models_dir: Path, out: Path, shards: int = 3, **overrides: object) -> BulkJob:
    given: dict[str, object] = {"labels": ["7", "2"], "per_label": 5, "seed": 11, "batch": 4, **overrides}
    return bulk.plan_job(models_dir, "digits", None, shards=shards, out=out, **given)  # type: ignore[arg-type]


def _never() -> bulk.LoadedModel:
    raise AssertionError("the model was loaded for a shard that is complete")


@pytest.mark.parametrize("total,shards", [(10, 3), (10, 10), (7, 1), (1000, 16), (17, 5)])
def test_shards_are_contiguous_balanced_and_cover_every_sample(tmp_path, total, shards) -> None:
    job = BulkJob(tmp_path, "m", 1, "0" * 64, tuple(range(total)), 1, 0, shards, tmp_path)
    spans = [job.span(i) for i in range(shards)]
    assert spans[0][0] == 0 and spans[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    sizes = [stop - start for start, stop in spans]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_shards_hold_the_same_samples_as_dataset(models_dir: Path, open_client, tmp_path: Path) -> None:
    # One data set two ways: /dataset (npz and tar) and three bulk shards, for the same labels and seed.
    out = tmp_path / "out"
    assert bulk.main(["--models-dir", str(models_dir), "--model", "digits", "--labels", "7", "2",
                      "--per-label", "5", "--seed", "11", "--shards", "3", "--out", str(out), "--all",
                      "--batch", "4"]) == 0  # fmt: skip
    names = sorted(p.name for p in out.iterdir())
    shard_files = [f"part-0000{i}-of-00003.{ext}" for i in range(3) for ext in ("json", "tar")]
    assert names == [bulk.RUN_FILE, *shard_files]  # and the run the directory belongs to
    shard_members = [m for i in range(3) for m in _members(out / f"part-0000{i}-of-00003.tar")]
    with open_client(models_dir, dataset_batch=3) as client:
        body = {"per_label": 5, "labels": [7, 2], "seed": 11}
        npz = np.load(io.BytesIO(client.post("/dataset", json=body).content))
        dataset_tar = tmp_path / "dataset.tar"
        dataset_tar.write_bytes(client.post("/dataset", json={**body, "format": "tar"}).content)
    # Entry for entry the same bytes: keys, PNGs, labels and metadata, whatever the batching.
    assert shard_members == _members(dataset_tar)

    import webdataset as wds

    shards = [str(out / f"part-0000{i}-of-00003.tar") for i in range(3)]
    samples = list(wds.WebDataset(shards, shardshuffle=False).decode("l8"))
    assert np.array_equal(np.stack([s["png"] for s in samples]), npz["x"])
    assert [s["cls"] for s in samples] == npz["y"].tolist()
    assert [s["json"]["seed"] for s in samples] == npz["seeds"].tolist()
    assert sorted(npz["seeds"].tolist()) == list(range(11, 21))

    manifest = json.loads((out / "part-00001-of-00003.json").read_text())
    assert manifest["run"]["samples"] == [3, 6] and manifest["positions"] == [3, 6]
    assert manifest["run"]["order"] == "shuffled" and manifest["format"] == 2
    assert manifest["keys"] == ["3", "5"] and manifest["images"] == 3
    assert manifest["label_counts"] == {
        "7": int((npz["y"][3:6] == 7).sum()),
        "2": int((npz["y"][3:6] == 2).sum()),
    }
    assert manifest["run"]["model"] == "digits" and manifest["run"]["version"] == 1
    assert manifest["tar_sha256"] == bulk.file_sha256(out / "part-00001-of-00003.tar")
    assert manifest["made_by"]["onnxruntime"] and isinstance(manifest["made_by"]["cpu"]["flags"], list)


@pytest.mark.parametrize("labels,per_label,shards", [(10, 100, 16), (3, 7, 4), (10, 37, 9), (7, 1000, 13)])
def test_every_shard_of_the_default_order_holds_every_label_within_one(
    tmp_path: Path, labels: int, per_label: int, shards: int
) -> None:
    import cgan_contract as contract

    job = BulkJob(tmp_path, "m", 1, "0" * 64, tuple(range(labels)), per_label, 5, shards, tmp_path)
    assert job.order == "shuffled"
    for i in range(shards):
        start, stop = job.span(i)
        index = contract.image_indices(np.arange(start, stop), labels, per_label, 5, job.order)
        counts = np.bincount(index // per_label, minlength=labels)
        equal = (stop - start) / labels
        assert np.all(np.abs(counts - equal) <= 1), (i, counts.tolist(), equal)
    by_class = BulkJob(
        tmp_path, "m", 1, "0" * 64, tuple(range(labels)), per_label, 5, shards, tmp_path, order="by_class"
    )
    first = contract.image_indices(np.arange(*by_class.span(0)), labels, per_label, 5, "by_class")
    assert len(set((first // per_label).tolist())) < labels or shards == 1, "by_class shards hold few labels"


def test_by_class_bulk_equals_the_by_class_dataset(models_dir: Path, open_client, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert bulk.main(["--models-dir", str(models_dir), "--model", "digits", "--labels", "7", "2",
                      "--per-label", "5", "--seed", "11", "--shards", "2", "--out", str(out), "--all",
                      "--order", "by_class", "--quiet"]) == 0  # fmt: skip
    with open_client(models_dir) as client:
        body = {"per_label": 5, "labels": [7, 2], "seed": 11, "format": "tar", "order": "by_class"}
        dataset_tar = tmp_path / "dataset.tar"
        dataset_tar.write_bytes(client.post("/dataset", json=body).content)
    shard_members = [m for i in range(2) for m in _members(out / f"part-0000{i}-of-00002.tar")]
    assert shard_members == _members(dataset_tar)
    seeds = [json.loads(data)["seed"] for name, data in shard_members if name.endswith(".json")]
    assert seeds == list(range(11, 21))


# --- resume ---------------------------------------------------------------------------------------------


def _write_all(job: BulkJob) -> dict[int, str]:
    return {r["shard"]: r["tar_sha256"] for r in bulk.run_all(job, range(job.shards), threads=1)}


def test_rerun_skips_verified_shards_without_touching_them(models_dir: Path, tmp_path: Path) -> None:
    job = _job(models_dir, tmp_path / "out")
    first = _write_all(job)
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in job.out.iterdir()}
    again = [bulk.run_shard(job, i, _never) for i in range(job.shards)]
    assert [r["status"] for r in again] == ["skipped"] * 3
    assert {r["shard"]: r["tar_sha256"] for r in again} == first
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in job.out.iterdir()} == before


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda tar, manifest: manifest.unlink(), id="manifest-missing"),
        pytest.param(lambda tar, manifest: manifest.write_text('{"run": '), id="manifest-torn"),
        pytest.param(
            lambda tar, manifest: manifest.write_text('{"run": 1, "tar_bytes": 1, "tar_sha256": ""}'),
            id="manifest-wrong-shape",
        ),  # fmt: skip
        pytest.param(lambda tar, manifest: tar.unlink(), id="tar-missing"),
        pytest.param(lambda tar, manifest: os.truncate(tar, tar.stat().st_size // 2), id="tar-short"),
        pytest.param(
            lambda tar, manifest: tar.write_bytes(tar.read_bytes().replace(b"IDAT", b"IDAU", 1)),
            id="tar-altered",
        ),
    ],
)
def test_damaged_shard_is_redone_to_the_same_bytes(models_dir: Path, tmp_path: Path, damage) -> None:
    job = _job(models_dir, tmp_path / "out")
    first = _write_all(job)
    tar, manifest = job.out / "part-00001-of-00003.tar", job.out / "part-00001-of-00003.json"
    damage(tar, manifest)
    assert bulk.verified_manifest(job, 1) is None
    results = bulk.run_all(job, range(job.shards), threads=1)
    assert [r["status"] for r in results] == ["skipped", "written", "skipped"]
    assert bulk.file_sha256(tar) == first[1] and bulk.verified_manifest(job, 1) is not None


def test_a_failure_mid_shard_leaves_nothing_that_looks_complete(models_dir: Path, tmp_path: Path) -> None:
    job = _job(models_dir, tmp_path / "out", shards=1)
    model = bulk.load_model(job, threads=1)

    class Failing:
        """The real model until its third batch, then an error, as a dying node would stop a shard."""

        def __init__(self) -> None:
            self.calls = 0

        def __getattr__(self, name: str) -> object:
            return getattr(model, name)

        def generate(
            self, labels: np.ndarray, seeds: np.ndarray, *rest: object, **options: object
        ) -> np.ndarray:
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("node lost")
            return model.generate(labels, seeds, *rest, **options)

    with pytest.raises(RuntimeError, match="node lost"):
        bulk.run_shard(job, 0, Failing)  # type: ignore[arg-type]
    assert [p.name for p in job.out.iterdir()] == [bulk.RUN_FILE] and bulk.verified_manifest(job, 0) is None
    assert bulk.run_shard(job, 0, lambda: model)["status"] == "written"
    assert bulk.verified_manifest(job, 0) is not None


def test_killed_process_leaves_a_partial_shard_that_is_redone(models_dir: Path, tmp_path: Path) -> None:
    # A real crash: SIGKILL while the tar is being written (no cleanup runs), then a rerun.
    out = tmp_path / "out"
    args = ["--models-dir", str(models_dir), "--model", "digits", "--per-label", "2000", "--shards", "2",
            "--out", str(out), "--batch", "8", "--threads", "1"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.bulk", *args, "--shard", "1"], stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    try:
        while not list(out.glob(".part-00001-of-00002.tar.*.tmp")):
            assert proc.poll() is None, "the shard finished before it could be killed"
            assert time.monotonic() < deadline, "no temporary tar appeared"
            time.sleep(0.01)  # polling the file system; there is no event to wait on
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [bulk.RUN_FILE]
    job = bulk.plan_job(models_dir, "digits", None, None, 2000, 0, 2, out, batch=8)
    assert bulk.verified_manifest(job, 1) is None
    result = bulk.run_all(job, [1], threads=1)[0]
    assert result["status"] == "written" and bulk.verified_manifest(job, 1) is not None
    assert sorted(p.name for p in out.iterdir()) == [bulk.RUN_FILE, "part-00001-of-00002.json",
                                                     "part-00001-of-00002.tar"]  # fmt: skip


def test_a_complete_shard_of_another_run_is_never_overwritten(models_dir: Path, tmp_path: Path) -> None:
    _write_all(_job(models_dir, tmp_path / "out"))
    other = _job(models_dir, tmp_path / "out", seed=12)
    with pytest.raises(BulkError, match="different run .*seed"):
        bulk.run_shard(other, 0, _never)
    by_class = _job(models_dir, tmp_path / "out", order="by_class")
    with pytest.raises(BulkError, match="different run \\(order differ"):
        bulk.run_shard(by_class, 0, _never)


# --- command line ---------------------------------------------------------------------------------------


def _cli(models_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["--models-dir", str(models_dir), "--model", "digits", "--per-label", "4", "--shards", "4",
            "--out", str(out), *extra]  # fmt: skip


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--labels", "3", "x", "--all"], "--labels: unknown label 'x'"),
        (["--labels", "3", "3", "--all"], "--labels: each label may appear once"),
        (["--shards", "0", "--all"], "--shards must be at least 1"),
        (["--shards", "41", "--all"], "--shards 41 exceeds the 40 images"),
        (["--shard", "4"], "shard index 4 is out of range 0..3"),
        (["--shard", "-1"], "shard index -1 is out of range"),
        ([], "no shard given"),
        (["--model", "nope", "--all"], "--model 'nope': no version directory"),
        (["--version", "9", "--all"], "--version 9 of 'digits' not found"),
        (["--per-label", "0", "--all"], "--per-label must be at least 1"),
        (["--seed", "-3", "--all"], "--seed must be 0..MAX_SEED"),
        (["--order", "random", "--all"], "--order must be one of shuffled, by_class, got 'random'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(models_dir: Path, tmp_path: Path, capsys, extra, message) -> None:
    assert bulk.main(_cli(models_dir, tmp_path / "out", *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cgan-bulk: error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_missing_models_dir_and_unloadable_model(models_dir: Path, tmp_path: Path, capsys, publish) -> None:
    assert bulk.main(_cli(tmp_path / "absent", tmp_path / "out", "--all")) == 2
    assert "--models-dir" in capsys.readouterr().err
    publish(models_dir, "digits", 2, sha256="0" * 64)  # a card that does not match its model.onnx
    assert bulk.main(_cli(models_dir, tmp_path / "out", "--shard", "0")) == 2
    err = capsys.readouterr().err
    assert err.startswith("cgan-bulk: error: digits v2 cannot be loaded: sha256") and err.count("\n") == 1


def test_job_completion_index_picks_the_shard(models_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "2")
    assert bulk.main(_cli(models_dir, tmp_path / "out")) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [bulk.RUN_FILE, "part-00002-of-00004.json",
                                                                    "part-00002-of-00004.tar"]  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert summary["shards"][0]["status"] == "written" and summary["images_written"] == 10
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "x")
    assert bulk.main(_cli(models_dir, tmp_path / "out")) == 2
    assert "JOB_COMPLETION_INDEX must be an integer" in capsys.readouterr().err


@pytest.mark.parametrize("quiet,tty,shown", [(False, True, True), (True, True, False), (False, False, False)])
def test_progress_bar_on_a_terminal_only(models_dir: Path, tmp_path: Path, quiet, tty, shown) -> None:
    import pty

    args = _cli(models_dir, tmp_path / "out", "--all", *(["--quiet"] if quiet else []))
    reader, writer = pty.openpty() if tty else os.pipe()
    if tty:  # a terminal 100 columns wide (a new pty has none, and tqdm would draw an empty bar)
        import fcntl
        import struct
        import termios

        fcntl.ioctl(writer, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    done = subprocess.run(
        [sys.executable, "-m", "service.bulk", *args], stdout=subprocess.DEVNULL, stderr=writer, timeout=120
    )
    os.close(writer)
    err = b""
    while True:
        try:
            chunk = os.read(reader, 1 << 16)
        except OSError:  # a pty reads EIO once its writer is gone
            break
        if not chunk:
            break
        err += chunk
    os.close(reader)
    assert done.returncode == 0, err
    text = err.decode(errors="replace")
    assert ("10/10 [" in text) is shown and ("img/s" in text) is shown, text
    assert "part-00003-of-00004.tar: written (10 images" in text


def test_console_script_runs_without_tensorflow(models_dir: Path, tmp_path: Path) -> None:
    code = (
        "import sys; from service import bulk; rc = bulk.main(sys.argv[1:]); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *_cli(models_dir, tmp_path / "out", "--shard", "0")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "part-00000-of-00004.tar: written (10 images" in done.stderr
