"""The bulk planner (service.bulk.plan_job) on its own: every number it checks, at both sides of each bound,
and the job it resolves. Reads cards only, so these are fast; test_bulk.py runs the shards themselves.

plan_job is called with keyword arguments only: its parameters may grow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cgan_contract as contract
from cgan_testing.fakes import FASHION
from service import bulk
from service.bulk import BulkError, BulkJob


def plan(models_dir: Path, **given: object) -> BulkJob:
    arguments: dict[str, object] = {
        "models_dir": models_dir,
        "model": "digits",
        "version": None,
        "labels": None,
        "per_label": 4,
        "seed": 0,
        "shards": 2,
        "out": models_dir.parent / "out",
        **given,
    }
    return bulk.plan_job(**arguments)  # type: ignore[arg-type]


def refused(models_dir: Path, **given: object) -> str:
    with pytest.raises(BulkError) as caught:
        plan(models_dir, **given)
    return str(caught.value)


def test_the_job_holds_what_was_resolved(models_dir: Path, publish) -> None:
    publish(models_dir, "digits", 3)
    out = models_dir.parent / "somewhere"
    job = plan(
        models_dir, labels=["7", 2], per_label=5, seed=11, shards=3, out=out, batch=8, png_compress_level=6
    )
    card = contract.read_card(models_dir / "digits" / "3")
    assert job == BulkJob(models_dir, "digits", 3, card.sha256, (7, 2), 5, 11, 3, out, 8, 6)
    assert job.total == 10


def test_defaults_every_class_the_newest_version_and_the_usual_batch(models_dir: Path, publish) -> None:
    publish(models_dir, "digits", 2)
    job = plan(models_dir)
    assert job.version == 2 and job.labels == tuple(range(10))
    assert (job.batch, job.png_compress_level) == (1024, 1)
    assert plan(models_dir, version=1).version == 1


def test_labels_by_class_name(models_dir: Path, publish) -> None:
    publish(models_dir, "fashion", 1, class_names=FASHION)
    assert plan(models_dir, model="fashion", labels=["Sneaker", "0", 3]).labels == (7, 0, 3)


def test_shards_up_to_the_image_count(models_dir: Path) -> None:
    assert plan(models_dir, labels=["1", "2"], per_label=3, shards=6).shards == 6  # one image each
    assert plan(models_dir, labels=["1"], per_label=1, shards=1).shards == 1
    message = refused(models_dir, labels=["1", "2"], per_label=3, shards=7)
    assert message == "--shards 7 exceeds the 6 images: a shard would be empty"


def test_the_last_seed_stays_within_max_seed(models_dir: Path) -> None:
    # 10 classes x 4 = 40 images use seeds seed .. seed + 39, so the highest first seed is MAX_SEED - 39.
    last = contract.MAX_SEED - 40 + 1
    assert plan(models_dir, seed=last).seed == last
    assert plan(models_dir, seed=0).seed == 0
    assert (
        refused(models_dir, seed=last + 1)
        == f"--seed must be 0..MAX_SEED - images + 1 ({last}), got {last + 1}"
    )
    assert refused(models_dir, seed=-1).startswith("--seed must be 0..MAX_SEED - images + 1")
    one = plan(models_dir, labels=["5"], per_label=1, shards=1, seed=contract.MAX_SEED)
    assert one.seed == contract.MAX_SEED  # one image may use the last seed itself


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"per_label": 0}, "--per-label must be at least 1, got 0"),
        ({"shards": 0}, "--shards must be at least 1, got 0"),
        ({"batch": 0}, "--batch must be at least 1, got 0"),
        ({"png_compress_level": -1}, "--png-compress-level must be 0..9, got -1"),
        ({"png_compress_level": 10}, "--png-compress-level must be 0..9, got 10"),
        (
            {"model": "../digits"},
            f"--model '../digits' is not a valid model name ({contract.MODEL_NAME_PATTERN})",
        ),
        ({"model": "absent"}, "--model 'absent': no version directory under "),
        ({"version": 9}, "--version 9 of 'digits' not found; versions: [1]"),
        ({"labels": ["3", "x"]}, "--labels: unknown label 'x'; classes are "),
        ({"labels": ["3", 3]}, "--labels: each label may appear once, got ['3', 3]"),
        ({"labels": ["10"]}, "--labels: label 10 is outside 0..9"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag(models_dir: Path, given: dict, message: str) -> None:
    assert refused(models_dir, **given).startswith(message)


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"per_label": 1}, "per_label"),
        ({"shards": 1}, "shards"),
        ({"batch": 1}, "batch"),
        ({"png_compress_level": 0}, "png_compress_level"),
        ({"png_compress_level": 9}, "png_compress_level"),
    ],
)
def test_the_lowest_and_highest_values_are_accepted(models_dir: Path, given: dict, field: str) -> None:
    assert getattr(plan(models_dir, **given), field) == next(iter(given.values()))


def test_a_missing_models_dir_and_an_unreadable_card(models_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    assert refused(missing) == f"--models-dir {str(missing)!r} is not a directory"
    card = models_dir / "digits" / "1" / contract.CARD_FILE
    card.write_text(json.dumps({"name": "digits"}))
    assert refused(models_dir).startswith(f"digits v1: {contract.CARD_FILE} cannot be read: ")
    card.unlink()
    assert refused(models_dir).startswith(f"digits v1: {contract.CARD_FILE} cannot be read: ")
