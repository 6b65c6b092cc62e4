"""The bulk generator's shards as Ray tasks on a real local cluster: a head and a second node process, one
CPU each, against the single-process CLI's output shard by shard."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cgan_testing.ray_cluster import LocalRayCluster
from service import bulk

pytest.importorskip("ray", reason="Ray comes with the dev install (the 'ray' extra)")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    with LocalRayCluster([1, 1]) as address:
        yield address


def _args(models_dir: Path, out: Path) -> list[str]:
    # Enough images (30k, a few seconds) that the second node's worker is up before the head has done them
    # all: Ray reuses a worker lease for queued tasks, so tiny shards would all run on the first node.
    return ["--models-dir", str(models_dir), "--model", "digits", "--per-label", "3000", "--seed", "7",
            "--shards", "6", "--batch", "256", "--out", str(out)]  # fmt: skip


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.bulk", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_ray_shards_equal_the_single_process_cli(cluster: str, models_dir: Path, tmp_path: Path) -> None:
    local = _cli(*_args(models_dir, tmp_path / "local"), "--all", "--threads", "1")
    assert local.returncode == 0, local.stderr
    on_ray = _cli(*_args(models_dir, tmp_path / "ray"), "--ray", cluster)
    assert on_ray.returncode == 0, on_ray.stderr

    summary = json.loads(on_ray.stdout)
    shards = summary["shards"]
    assert [s["shard"] for s in shards] == list(range(6)) and {s["status"] for s in shards} == {"written"}
    assert len({s["node"] for s in shards}) == 2, "both nodes should have run shards"
    for i in range(6):
        name = f"part-{i:05d}-of-00006"
        tar = (tmp_path / "ray" / f"{name}.tar").read_bytes()
        assert tar == (tmp_path / "local" / f"{name}.tar").read_bytes(), name
        manifest = json.loads((tmp_path / "ray" / f"{name}.json").read_text())
        assert (
            manifest["tar_sha256"]
            == shards[i]["tar_sha256"]
            == bulk.file_sha256(tmp_path / "local" / f"{name}.tar")
        )

    # A rerun on the cluster finds every shard complete and verified, and rewrites nothing.
    (tmp_path / "ray" / "part-00004-of-00006.json").unlink()
    again = _cli(*_args(models_dir, tmp_path / "ray"), "--ray", cluster)
    assert again.returncode == 0, again.stderr
    statuses = [s["status"] for s in json.loads(again.stdout)["shards"]]
    assert statuses == ["skipped"] * 4 + ["written", "skipped"]


def test_bad_input_on_ray_is_one_line(cluster: str, models_dir: Path, tmp_path: Path, publish) -> None:
    # Flags are checked before anything reaches the cluster.
    done = _cli(*_args(models_dir, tmp_path / "out"), "--ray", cluster, "--shards", "0")
    assert (
        done.returncode == 2 and done.stderr.strip() == "cgan-bulk: error: --shards must be at least 1, got 0"
    )
    # A model that only fails when a node loads it is reported the same way, not as a Ray traceback.
    publish(models_dir, "digits", 2, sha256="0" * 64)
    done = _cli(*_args(models_dir, tmp_path / "out"), "--ray", cluster, "--version", "2")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith("cgan-bulk: error: digits v2 cannot be loaded: sha256"), done.stderr
    assert not list((tmp_path / "out").glob("part-*.json"))  # no shard manifest
