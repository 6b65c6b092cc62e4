"""The /dataset archive writers (service/archives.py) on their own, no app: the tar is a whole number of
tar records, byte for byte what Python's tarfile writes for the same members; the npz, zip and tar hold
what they say, in the plan's order (by_class here, so positions are indices; test_dataset.py drives the
shuffled default through /dataset)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cgan_testing.fakes import FASHION, write_version
from service import archives
from service.archives import DatasetPlan, npz_chunks, tar_chunks, tar_end, zip_chunks
from service.config import Settings
from service.metrics import Metrics
from service.models import LoadedModel, ModelRegistry


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    root = tmp_path_factory.mktemp("archives") / "models"
    version = write_version(root, "fashion", 2, class_names=FASHION)
    settings = Settings(models_dir=root, bundled_models=False, ort_intra_op_threads=1, model_lanes=1)
    return ModelRegistry(settings, Metrics()).load("fashion", 2, version)


def plan(model: LoadedModel, **fields: object) -> DatasetPlan:
    given: dict[str, object] = {
        "labels": (3, 0), "per_label": 3, "seed": 5, "batch": 4, "order": "by_class", **fields
    }  # fmt: skip
    return DatasetPlan(model=model, **given)  # type: ignore[arg-type]


def expected(model: LoadedModel, labels: list[int], seeds: list[int]) -> np.ndarray:
    return model.generate(np.array(labels), np.array(seeds, np.uint64))


@pytest.mark.parametrize("written", [0, 512, 1536, 8704, 9216, 9728, 10240, 10752, 20480 + 3 * 512])
def test_the_end_of_the_tar_pads_it_to_whole_records(written: int) -> None:
    end = tar_end(written)
    assert not end.strip(b"\0"), "the end is zero blocks"
    assert len(end) >= 2 * tarfile.BLOCKSIZE, "two zero blocks at least mark the end"
    assert (written + len(end)) % tarfile.RECORDSIZE == 0, "a tar is whole 10240-byte records"
    assert len(end) < 2 * tarfile.BLOCKSIZE + tarfile.RECORDSIZE


def test_the_tar_is_what_tarfile_writes_for_the_same_samples(model: LoadedModel) -> None:
    p = plan(model)
    body = b"".join(tar_chunks(p))
    assert len(body) % tarfile.RECORDSIZE == 0
    written = io.BytesIO()
    with (
        tarfile.open(fileobj=written, mode="w", format=tarfile.USTAR_FORMAT) as reference,
        tarfile.open(fileobj=io.BytesIO(body)) as ours,
    ):
        for member in ours.getmembers():
            data = ours.extractfile(member).read()  # type: ignore[union-attr]
            info = tarfile.TarInfo(member.name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            reference.addfile(info, io.BytesIO(data))
    assert body == written.getvalue()


def test_the_tar_holds_each_sample_in_order(model: LoadedModel) -> None:
    p = plan(model, truncation=1.5)
    with tarfile.open(fileobj=io.BytesIO(b"".join(tar_chunks(p)))) as shard:
        members = [(m.name, shard.extractfile(m).read()) for m in shard.getmembers()]  # type: ignore[union-attr]
    assert [name for name, _ in members] == [f"{j}.{ext}" for j in range(6) for ext in ("png", "cls", "json")]
    labels, seeds = [3, 3, 3, 0, 0, 0], list(range(5, 11))
    images = model.generate(np.array(labels), np.array(seeds, np.uint64), truncation=1.5)
    for j in range(6):
        png, cls, meta = (data for _, data in members[3 * j : 3 * j + 3])
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), images[j, ..., 0])
        assert cls == str(labels[j]).encode()
        assert json.loads(meta) == {
            "label": labels[j],
            "class_name": FASHION[labels[j]],
            "seed": seeds[j],
            "index": j,
            "model": "fashion",
            "version": 2,
            "truncation": 1.5,
        }
    assert [m for m in archives.tar_samples(p, start=4, stop=6)][0].startswith(b"4.png")


def test_keys_are_zero_padded_to_the_last_sample(model: LoadedModel) -> None:
    p = plan(model, labels=(1,), per_label=11)
    assert [p.key(j) for j in (0, 9, 10)] == ["00", "09", "10"]
    assert p.image_path(0) == "Trouser/00.png" and p.image_path(10) == "Trouser/10.png"
    assert plan(model, labels=(1,), per_label=10).image_path(9) == "Trouser/9.png"
    assert p.filename("tar") == "fashion-v2-seed5.tar"
    assert plan(model, start=2, stop=7).filename("npz") == "fashion-v2-seed5-2-7.npz"
    assert archives.folders((0, 4), ["T-shirt/top", "", "", "", ".."]) == {0: "0_T-shirt_top", 4: "4_class"}


def test_batches_cover_every_sample_in_order(model: LoadedModel) -> None:
    p = plan(model, batch=4)
    got = [(b.first, b.indices.tolist(), b.labels.tolist(), b.seeds.tolist()) for b in p.batches()]
    assert got == [(0, [0, 1, 2, 3], [3, 3, 3, 0], [5, 6, 7, 8]), (4, [4, 5], [0, 0], [9, 10])]
    assert [(b.first, b.seeds.tolist()) for b in p.batches(2, 5)] == [(2, [7, 8, 9])]
    assert p.total == 6 and p.seeds_of(np.array([4])).tolist() == [9]
    assert p.acceptance_rate is None and p.controls() == {}
    mixed = plan(model, order="shuffled", batch=4)
    indices = np.concatenate([b.indices for b in mixed.batches()])
    assert sorted(indices.tolist()) == list(range(6)) and indices.tolist() != list(range(6))
    for b in mixed.batches():  # labels and seeds follow each index, whatever the order
        assert b.seeds.tolist() == (b.indices + 5).tolist() and b.labels.tolist() == [
            (3, 0)[j // 3] for j in b.indices
        ]
    part = plan(model, order="shuffled", start=1, stop=4)
    assert part.total == 3 and [b.indices.tolist() for b in part.batches()] == [indices[1:4].tolist()]


def test_the_npz_holds_x_and_y_in_sample_order(model: LoadedModel) -> None:
    data = np.load(io.BytesIO(b"".join(npz_chunks(plan(model)))))
    assert data.files == ["order", "y", "seeds", "x"]
    assert str(data["order"]) == "by_class" and data["seeds"].tolist() == list(range(5, 11))
    assert data["x"].shape == (6, 28, 28) and data["x"].dtype == np.uint8
    assert data["y"].tolist() == [3, 3, 3, 0, 0, 0] and data["y"].dtype == np.int64
    np.testing.assert_array_equal(data["x"], expected(model, [3, 3, 3, 0, 0, 0], list(range(5, 11)))[..., 0])


def test_a_filtered_npz_adds_the_seeds_and_the_acceptance_rate(model: LoadedModel) -> None:
    seeds = np.array([5, 9, 12, 13, 20, 22], np.uint64)
    p = plan(model, seeds=seeds, min_confidence=0.5, examined=8)
    data = np.load(io.BytesIO(b"".join(npz_chunks(p))))
    assert data.files == ["order", "y", "seeds", "x", "acceptance_rate"]
    assert data["seeds"].tolist() == seeds.tolist() and data["seeds"].dtype == np.int64
    assert data["acceptance_rate"].tolist() == [0.75]
    np.testing.assert_array_equal(data["x"], expected(model, [3, 3, 3, 0, 0, 0], seeds.tolist())[..., 0])
    assert p.seeds_of(np.array([2])).tolist() == [12]
    assert p.controls() == {"min_confidence": 0.5, "acceptance_rate": 0.75, "candidates_judged": 8}


def test_the_zip_holds_pngs_per_class_and_its_manifests(model: LoadedModel) -> None:
    p = plan(model, truncation=2.0)
    with zipfile.ZipFile(io.BytesIO(b"".join(zip_chunks(p)))) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
        rows = list(csv.reader(io.StringIO(archive.read("manifest.csv").decode())))
        first = np.asarray(Image.open(io.BytesIO(archive.read("Dress/0.png"))))
    paths = [f"Dress/{i}.png" for i in range(3)] + [f"T-shirt_top/{i}.png" for i in range(3)]
    assert names == [*paths, "manifest.json", "manifest.csv"]
    assert rows[0] == ["path", "label", "class_name", "seed", "index"]
    assert rows[1:] == [
        [path, str(label), FASHION[label], str(5 + j), str(j)]
        for j, (path, label) in enumerate(zip(paths, [3] * 3 + [0] * 3, strict=True))
    ]
    assert manifest["count"] == 6 and manifest["seed"] == 5 and manifest["labels"] == [3, 0]
    assert manifest["truncation"] == 2.0 and manifest["sha256"] == model.card.sha256
    assert manifest["order"] == "by_class" and manifest["rule"].startswith("image j of the set")
    assert manifest["folders"] == ["Dress", "T-shirt_top"] and manifest["positions"] == [0, 6]
    np.testing.assert_array_equal(
        first, model.generate(np.array([3]), np.array([5], np.uint64), truncation=2.0)[0, ..., 0]
    )


def test_archives_are_the_same_bytes_every_time(model: LoadedModel, tmp_path: Path) -> None:
    for chunks in (npz_chunks, zip_chunks, tar_chunks):
        assert b"".join(chunks(plan(model))) == b"".join(chunks(plan(model))), chunks.__name__


@settings(max_examples=300, deadline=None)
@given(
    name=st.text(st.characters(min_codepoint=32, max_codepoint=0x24F), max_size=120),
    size=st.one_of(st.integers(0, 10**6), st.integers(8**11 - 2, 8**11 + 2)),
)
def test_the_filled_in_tar_header_is_tarfiles_byte_for_byte(name: str, size: int) -> None:
    """archives._tar_header (a template, ~1 us) against tarfile's own (~23 us): the same bytes, or the same
    refusal (a name tarfile cannot split into USTAR's prefix and name)."""
    try:
        want = archives._tarfile_header(name, size)
    except ValueError:
        with pytest.raises(ValueError):
            archives._tar_header(name, size)
        return
    assert archives._tar_header(name, size) == want


@pytest.mark.parametrize("chunks", [tar_chunks, npz_chunks, zip_chunks])
def test_pieces_run_at_once_give_the_same_bytes(model: LoadedModel, chunks) -> None:
    """``parallel`` runs a batch's pieces on several threads (the model runs 2 images at a time here): the
    archive must not depend on it, nor on which piece finishes first."""
    small = dataclasses.replace(model, run_images=2)
    one_by_one = b"".join(chunks(plan(small, per_label=7, batch=16)))
    at_once = b"".join(chunks(plan(small, per_label=7, batch=16, parallel=3)))
    assert at_once == one_by_one
