"""Version directory names are ASCII digits (issue #32, row 6): ``str.isdigit`` also takes ``²`` (which
``int()`` refuses, so every scan crashed and every worker exited at start) and ``٣`` or ``１`` (which
``int()`` reads as 3 and 1, so a stray directory served as a version). Everywhere a version is read from a
name (the contract's listing, the registry, ``cgan-bulk``), such an entry is skipped; the registry says so
once in its log and counts it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import cgan_contract as contract
from service import bulk

#: Names ``str.isdigit`` accepts that are not ASCII digits: superscript two, Arabic-Indic three, a
#: fullwidth one, a Devanagari seven.
NOT_ASCII = ("²", "٣", "１", "७")


@pytest.fixture
def junk(models_dir: Path) -> Path:
    """MODELS_DIR with digits v1 and, beside it, one directory of each name in NOT_ASCII."""
    for name in NOT_ASCII:
        (models_dir / "digits" / name).mkdir()
    return models_dir


def test_the_contract_lists_ascii_digit_versions_only(junk: Path) -> None:
    assert [(v, p.name) for v, p in contract.version_dirs(junk / "digits")] == [(1, "1")]


def test_the_registry_skips_them_says_so_once_and_counts_them(
    junk: Path, open_client, runtime, metric, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="service"), open_client(junk) as client:
        assert client.get("/readyz").json() == {
            "ready": True,
            "reason": None,
            "models": {"digits": 1},
            "refused": {},
        }
        runtime(client).registry.scan()
        skipped = metric(client, "cgan_model_scan_skips_total", {"reason": "version_name"})
    lines = [r.getMessage() for r in caplog.records if "not a version" in r.getMessage()]
    assert len(lines) == len(NOT_ASCII), lines  # one each, not one each scan
    assert all(any(repr(name) in line for line in lines) for name in NOT_ASCII), lines
    assert skipped == len(NOT_ASCII)


def test_cgan_bulk_plans_around_them(junk: Path) -> None:
    job = bulk.plan_job(
        models_dir=junk,
        model="digits",
        version=None,
        labels=None,
        per_label=1,
        seed=0,
        shards=1,
        out=junk.parent / "out",
    )
    assert job.version == 1
