"""Model loading under trouble (issue #17, items 3, 5 and 7): a read that blocks or is too big never holds
up other models; /readyz tells no paths; a card rewritten in place (``cgan-train evaluate``) is picked up.
(Item 4, the implicit default, is test_default_model.py's since issue #32 made it one rule.)"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

import cgan_contract as contract
from service.config import Settings
from service.models import loader as registry_module


def _served(client) -> dict[str, int]:
    return client.get("/readyz").json()["models"]


def _scan_within(seconds: float, client, runtime) -> list[dict[str, int]]:
    """``[what the scan served]``, or ``[]`` when it had not returned within ``seconds``."""
    result: list = []
    scan = threading.Thread(target=lambda: result.append(runtime(client).registry.scan()), daemon=True)
    scan.start()
    scan.join(seconds)
    return result


def test_fifo_model_file_is_refused_without_blocking_other_models(
    models_dir: Path, publish, open_client, runtime
) -> None:
    with open_client(models_dir) as client:
        stuck = publish(models_dir, "aaa", 1, atomic=False)
        (stuck / contract.MODEL_FILE).unlink()
        os.mkfifo(stuck / contract.MODEL_FILE)  # stands in for a hung network filesystem
        publish(models_dir, "digits", 2)
        result: list = []
        scan = threading.Thread(target=lambda: result.append(runtime(client).registry.scan()), daemon=True)
        scan.start()
        scan.join(10)
        assert result == [{"digits": 2}], "the scan hung on a FIFO"
        assert client.get("/readyz").json()["refused"] == {"aaa/1": "unreadable"}


def test_hung_read_times_out_and_other_models_still_load(
    models_dir: Path, publish, open_client, runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    original = registry_module._read_bounded

    def hanging(path: Path, limit: int) -> bytes:
        if "hung" in path.parts:
            release.wait(30)  # a read that never returns on its own
        return original(path, limit)

    monkeypatch.setattr(registry_module, "_read_bounded", hanging)
    try:
        with open_client(models_dir, model_read_timeout_seconds=0.3) as client:
            publish(models_dir, "hung", 1)
            publish(models_dir, "digits", 2)
            started = time.monotonic()
            assert runtime(client).registry.scan() == {"digits": 2}
            assert time.monotonic() - started < 5
            assert client.get("/readyz").json()["refused"] == {"hung/1": "timeout"}
            # The hung read is not started again while it still hangs: no thread piles up per scan.
            threads = threading.active_count()
            for _ in range(3):
                runtime(client).registry.scan()
            assert threading.active_count() <= threads
            # Once the filesystem answers and the files change, the version loads.
            release.set()
            publish(models_dir, "hung", 2)
            deadline = time.monotonic() + 10
            while "hung" not in runtime(client).registry.scan():
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        release.set()


def test_a_stalled_version_lookup_blocks_nothing_else(
    models_dir: Path, publish, open_client, runtime, metric, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """A version directory whose stat() never answers (a stalled network filesystem) is skipped after
    MODEL_READ_TIMEOUT_SECONDS, logged and counted once; versions published later still load."""
    release = threading.Event()
    stat = os.stat
    stuck = models_dir / "stuck" / "1"

    def stalling(path, *args, **kwargs):
        if isinstance(path, str | os.PathLike) and Path(path).is_relative_to(stuck):
            release.wait(30)  # a lookup that never returns on its own
        return stat(path, *args, **kwargs)

    try:
        with open_client(models_dir, model_read_timeout_seconds=0.3) as client:
            publish(models_dir, "stuck", 1)
            monkeypatch.setattr(os, "stat", stalling)
            publish(models_dir, "digits", 2)  # published after the stall began
            with caplog.at_level(logging.WARNING, logger="service"):
                result = _scan_within(5, client, runtime)
                assert result == [{"digits": 2}], "the scan hung on a stalled stat()"
                response = client.post("/generate", json={"label": 1, "model": "digits", "version": 2})
                assert response.status_code == 200, response.text
                assert client.get("/readyz").json()["refused"] == {"stuck/1": "timeout"}
                # Later scans skip it at once: no thread, log line or count per scan while it hangs.
                threads = threading.active_count()
                started = time.monotonic()
                for _ in range(3):
                    assert runtime(client).registry.scan() == {"digits": 2}
                assert time.monotonic() - started < 0.3 * 3
                assert threading.active_count() <= threads
            stalled = [r.getMessage() for r in caplog.records if "did not answer" in r.getMessage()]
            assert len(stalled) == 1 and str(stuck) in stalled[0], stalled
            assert metric(client, "cgan_model_scan_skips_total", {"reason": "timeout"}) == 1
            # Once the filesystem answers, the version loads.
            release.set()
            deadline = time.monotonic() + 10
            while "stuck" not in runtime(client).registry.scan():
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        release.set()


@pytest.mark.parametrize("level", ["name", "root"])
def test_a_served_version_whose_lookup_stalls_keeps_serving(
    models_dir: Path, open_client, runtime, monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    release = threading.Event()
    listdir = os.listdir
    served = models_dir / "digits" if level == "name" else models_dir

    def stalling(path=".", *args, **kwargs):
        if isinstance(path, str | os.PathLike) and Path(path) == served:
            release.wait(30)  # the name's directory, or MODELS_DIR, stops answering
        return listdir(path, *args, **kwargs)

    try:
        with open_client(models_dir, model_read_timeout_seconds=0.3) as client:
            monkeypatch.setattr(os, "listdir", stalling)
            for _ in range(2):
                assert _scan_within(5, client, runtime) == [{"digits": 1}], "the scan hung on a listing"
            assert client.post("/generate", json={"label": 1}).status_code == 200
    finally:
        release.set()


def test_model_file_over_the_size_cap_is_refused(models_dir: Path, publish, open_client, metric) -> None:
    with open_client(models_dir, max_model_bytes=1024) as client:
        assert client.get("/readyz").json()["refused"] == {"digits/1": "too_large"}
        refusals = {"model": "digits", "reason": "too_large"}
        assert metric(client, "cgan_model_load_refusals_total", refusals) == 1


def test_a_sparse_model_file_over_the_cap_is_refused_before_any_read(tmp_path: Path) -> None:
    """A 600 MiB model.onnx that takes no disk (a sparse file) is refused on its size alone: reading up to
    MAX_MODEL_BYTES first cost 512 MiB of memory at every start."""
    sparse = tmp_path / contract.MODEL_FILE
    with sparse.open("wb") as f:
        f.truncate(600 * 1024 * 1024)
    reader = registry_module.BoundedReader(Settings.model_fields["max_model_bytes"].default, 30)
    tracemalloc.start()
    try:
        with pytest.raises(registry_module.ModelRefused) as refused:
            reader.read(sparse)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused.value.reason == "too_large"
    assert peak < 1024 * 1024, f"refusing read {peak / 2**20:.0f} MiB first"


def test_readyz_tells_no_paths_or_loader_messages(
    tmp_path: Path, models_dir: Path, publish, open_client
) -> None:
    publish(models_dir, "digits", 2, sha256="f" * 64)
    with open_client(models_dir) as client:
        body = client.get("/readyz").text
        assert str(tmp_path) not in body and "the card says" not in body
        assert client.get("/readyz").json()["refused"] == {"digits/2": "sha256"}
    with open_client(tmp_path / "absent") as client:
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503 and str(tmp_path) not in not_ready.text
        assert str(tmp_path) not in client.post("/generate", json={"label": 1}).text


def test_card_rewritten_in_place_is_reloaded(models_dir: Path, open_client, runtime) -> None:
    card_file = models_dir / "digits" / "1" / contract.CARD_FILE
    with open_client(models_dir) as client:
        assert client.get("/v1/models/digits").json()["card"]["quality"] is None
        card = json.loads(card_file.read_text())
        quality = {
            "samples_per_class": 10,
            "label_accuracy": 0.9,
            "per_class_accuracy": [0.9] * 10,
            "judge_test_accuracy": 0.99,
            "fid": 12.5,
            "fid_floor": 1.0,
            "fid_ratio": 12.5,
            "gan_train_accuracy": 0.8,
            "real_train_accuracy": 0.95,
            "diversity_ratio": 0.9,
            "mode_collapse": False,
            "evaluated_at": "2026-01-01T00:00:00Z",
        }
        card["quality"] = quality
        card_file.write_text(json.dumps(card))
        runtime(client).registry.scan()
        got = client.get("/v1/models/digits").json()
        assert got["card"]["quality"]["fid"] == 12.5, got
        assert got["version"] == 1
        # A rewrite that no longer matches the served bytes is refused; the good card stays.
        card["sha256"] = "0" * 64
        card_file.write_text(json.dumps(card))
        runtime(client).registry.scan()
        assert client.get("/v1/models/digits").json()["card"]["sha256"] != "0" * 64
        assert client.post("/generate", json={"label": 1}).status_code == 200


@pytest.mark.parametrize("lanes", [False, True])
def test_a_replaced_model_is_freed_when_its_last_reference_goes(lanes: bool) -> None:
    # Without the cyclic GC: a model that referred to itself (its lane view) kept its sessions alive
    # until a collection, and the soak drill's RSS crept up with every replaced version.
    import gc
    import weakref
    from datetime import UTC, datetime

    from cgan_testing.fakes import make_card
    from service.models import LoadedModel

    card = make_card("digits", 1, "0" * 64)
    session = type("Session", (), {})()
    model = LoadedModel(
        "digits",
        1,
        Path("."),
        card,
        session,
        datetime.now(UTC),
        None,
        lane_session=session if lanes else None,
    )
    assert model.on_lanes.session is session and (model.on_lanes is model) is not lanes
    ref = weakref.ref(model)
    gc.disable()
    try:
        del model
        assert ref() is None, "kept alive by a reference cycle"
    finally:
        gc.enable()
