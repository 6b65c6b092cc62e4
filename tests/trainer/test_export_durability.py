"""Issue #17 item 9, export: model.onnx and model.json are both fsynced, then the staging directory, then
the rename, then the parent directory, so a power cut never publishes a version with a missing card."""

from __future__ import annotations

import json
import os
import types
from pathlib import Path

import pytest

import cgan_contract as contract
from trainer import export as export_mod
from trainer.export import export


@pytest.fixture
def no_tensorflow(monkeypatch):
    """Stand-ins for the conversion and checks, so the test only exercises the write path."""
    proto = types.SimpleNamespace(SerializeToString=lambda: b"onnx bytes")
    monkeypatch.setattr(export_mod, "to_onnx", lambda generator, latent_dim, num_codes=0: proto)
    monkeypatch.setattr(export_mod.runner, "open_session", lambda *a, **k: None)
    monkeypatch.setattr(export_mod, "check_signature", lambda *a, **k: None)
    monkeypatch.setattr(export_mod, "parity", lambda *a, **k: 0)


@pytest.fixture
def disk_events(monkeypatch):
    """Every fsync (with what the synced path held at that moment) and rename, in order."""
    events: list[tuple] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd):
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        events.append(("fsync", path, None if path.is_dir() else path.read_bytes()))
        return real_fsync(fd)

    def rename(src, dst, *args, **kwargs):
        events.append(("rename", Path(src), Path(dst)))
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    return events


INFO = dict(
    name="m",
    variant="cgan",
    arch="dense",
    dataset="test",
    class_names=["a", "b"],
    latent_dim=4,
    image_shape=(28, 28, 1),
)


@pytest.mark.parametrize("race", [False, True], ids=["first-version", "version-1-taken-during-the-rename"])
def test_files_then_staging_dir_then_rename_then_parent_dir_are_synced(
    tmp_path, no_tensorflow, disk_events, race, monkeypatch
):
    extra = tmp_path / "samples.png"
    extra.write_bytes(b"png")
    model_root = tmp_path / "models" / "m"
    taken = int(race)
    if race:
        # Another exporter claims version 1 between our pick and our rename: the rename fails, publish moves
        # on to 2 and rewrites the card, so the card that is synced must be the rewritten one.
        recording_rename = os.rename

        def rename_after_a_rival(src, dst, *args, **kwargs):
            if Path(dst) == model_root / "1":
                Path(dst).mkdir()
                (Path(dst) / "model.onnx").write_bytes(b"theirs")
            return recording_rename(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "rename", rename_after_a_rival)

    published = export(None, tmp_path / "models", extra_files={"samples.png": extra}, **INFO)
    assert published == model_root / str(1 + taken)

    renames = [i for i, e in enumerate(disk_events) if e[0] == "rename" and e[2] == published]
    assert len(renames) == 1, disk_events
    rename_at = renames[0]
    staging = disk_events[rename_at][1]
    synced = {
        e[1].name: (i, e[2])
        for i, e in enumerate(disk_events[:rename_at])
        if e[0] == "fsync" and e[2] is not None and e[1].parent == staging
    }

    # Every file, the card too, was synced before the rename, the card with its final content.
    for name in (contract.MODEL_FILE, contract.CARD_FILE, "samples.png"):
        assert name in synced, f"{name} was not fsynced before the rename"
    card_at, card_bytes = synced[contract.CARD_FILE]
    assert card_bytes == (published / contract.CARD_FILE).read_bytes()
    assert json.loads(card_bytes)["version"] == 1 + taken
    assert synced[contract.MODEL_FILE][1] == b"onnx bytes"

    # The staging directory after its files (and after the card was last written), before the rename.
    dir_syncs = [i for i, e in enumerate(disk_events[:rename_at]) if e[0] == "fsync" and e[1] == staging]
    assert dir_syncs and dir_syncs[-1] > max(i for i, _ in synced.values()), disk_events

    # The parent directory after the rename, so the new name itself is durable.
    assert any(e[0] == "fsync" and e[1] == model_root for e in disk_events[rename_at + 1 :]), disk_events
    assert not any(p.name.startswith(".staging-") for p in model_root.iterdir())
