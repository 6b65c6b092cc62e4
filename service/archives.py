"""``/dataset`` archives (npz, zip, tar), made batch by batch so memory does not grow with the image count.

Order and seeds: the labels in the order requested, ``per_label`` images each; image ``j`` overall (row
``j`` of ``x``, line ``j`` of ``manifest.csv``) is label ``labels[j // per_label]`` with seed ``seed + j``.
With ``min_confidence`` each label's images are the ones its judge accepted (:mod:`service.filtering`),
so seeds have gaps: the zip's ``manifest.csv`` and the tar's ``.json`` name each image's seed, the npz
adds ``seeds.npy`` (int64 ``[N]``) and ``acceptance_rate.npy`` (float64 ``[1]``) after ``y.npy``, and the
zip's ``manifest.json`` gives ``min_confidence``, ``acceptance_rate`` and the candidates judged. With
``truncation`` the manifests and each tar ``.json`` carry it too: it is needed to make an image again.

* ``npz``: ``x.npy`` uint8 ``[N, H, W]`` (``[N, H, W, C]`` when C > 1) and ``y.npy`` int64 ``[N]``, stored
  uncompressed. The ``x`` header carries the final shape up front, so rows are written as they are made.
* ``zip``: ``<class_index>_<class_name>/<i>.png`` with ``i`` the index within the class, plus
  ``manifest.json`` (what was asked) and ``manifest.csv`` (path, label, class_name, seed per image).
* ``tar``: a WebDataset shard. Sample ``j`` is the key ``j`` zero-padded to the digits of ``N - 1``, with
  ``<key>.png``, ``<key>.cls`` (the label as decimal text) and ``<key>.json`` (label, class_name, seed,
  model, version), in that order. No other members, so every entry of the tar is a sample. The bulk
  generator (:mod:`service.bulk`) writes a contiguous slice ``[start, stop)`` of the same samples with the
  same keys, so its shards and a ``/dataset`` tar agree entry for entry.

Entries carry a fixed timestamp, so the same request gives byte-identical archives. A zip holds one
central-directory record per entry until it closes, roughly 0.5 KB per image in ``zip`` format.
"""

from __future__ import annotations

import csv
import io
import re
import tarfile
import zipfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field

import numpy as np
import orjson

from service import imaging
from service.registry import LoadedModel

MEDIA_TYPES = {"npz": "application/octet-stream", "zip": "application/zip", "tar": "application/x-tar"}
_EPOCH = (1980, 1, 1, 0, 0, 0)
_ZIP64_AT = 1 << 31  # below zipfile's own 4 GiB limit, leaving room for headers and the manifest
_CSV_ROWS = 8192


@dataclass(frozen=True)
class DatasetPlan:
    model: LoadedModel
    labels: tuple[int, ...]
    per_label: int
    seed: int
    batch: int
    #: float32 ``[k]``: the style codes of every image, when the request gave them (else the seed rule's).
    codes: np.ndarray | None = None
    truncation: float | None = None
    #: With min_confidence: the seed of every image (uint64 ``[total]``) and how many candidates were judged.
    seeds: np.ndarray | None = field(default=None, compare=False)
    min_confidence: float | None = None
    examined: int | None = None

    @property
    def total(self) -> int:
        return len(self.labels) * self.per_label

    def batches(
        self, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(first, labels, seeds)`` for each batch of at most ``batch`` images of samples ``[start, stop)``
        (all by default), in overall order; ``first`` is the overall index of the batch's first image."""
        stop = self.total if stop is None else stop
        label_of_block = np.asarray(self.labels, dtype=np.int64)
        for first in range(start, stop, self.batch):
            index = np.arange(first, min(first + self.batch, stop), dtype=np.int64)
            seeds = (index + self.seed).astype(np.uint64) if self.seeds is None else self.seeds[index]
            yield first, label_of_block[index // self.per_label], seeds

    def seed_of(self, j: int) -> int:
        return self.seed + j if self.seeds is None else int(self.seeds[j])

    @property
    def acceptance_rate(self) -> float | None:
        return None if self.examined is None else self.total / self.examined

    def images(self, labels: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        """The images of a batch from :meth:`batches`, made with the request's codes and quality controls."""
        codes = None if self.codes is None else np.tile(self.codes, (len(seeds), 1))
        return self.model.generate(labels, seeds, codes, self.truncation)

    def controls(self) -> dict[str, float | int]:
        """The quality controls asked for, and what filtering took, for manifests (empty when none)."""
        found: dict[str, float | int] = {}
        if self.truncation is not None:
            found["truncation"] = self.truncation
        if self.min_confidence is not None and self.examined is not None:
            found |= {
                "min_confidence": self.min_confidence,
                "acceptance_rate": self.total / self.examined,
                "candidates_judged": self.examined,
            }
        return found

    def __post_init__(self) -> None:
        # Paths are built per image; the folder names and digit width are worked out once.
        folders = {label: _folder(label, self.model.card.class_names[label]) for label in self.labels}
        object.__setattr__(self, "_folders", folders)
        object.__setattr__(self, "_width", len(str(self.per_label - 1)))
        object.__setattr__(self, "_key_width", len(str(self.total - 1)))

    def image_path(self, j: int) -> str:
        return f"{self._folders[self.labels[j // self.per_label]]}/{j % self.per_label:0{self._width}d}.png"

    def key(self, j: int) -> str:
        """The WebDataset key of image ``j`` overall: fixed width, so keys sort in sample order."""
        return f"{j:0{self._key_width}d}"

    def filename(self, fmt: str) -> str:
        return f"{self.model.name}-v{self.model.version}-seed{self.seed}.{fmt}"


def _folder(label: int, class_name: str) -> str:
    """``3_T-shirt_top``: the index keeps folders unique even when two names sanitise alike."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", class_name).strip("._-")
    return f"{label}_{name or 'class'}"


class _Sink:
    """A write-only file for zipfile; without ``seek`` zipfile streams, writing data descriptors."""

    def __init__(self) -> None:
        self._parts: list[bytes | memoryview] = []

    def write(self, data: bytes | memoryview) -> int:
        # Kept without a copy: the buffers handed in are fresh per batch and never written to again.
        self._parts.append(data)
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_STORED  # PNG and digits-in-npy gain little from deflate, and cost CPU
    info.external_attr = 0o644 << 16
    return info


def _archive(sink: _Sink) -> zipfile.ZipFile:
    return zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True)


def npz_chunks(plan: DatasetPlan) -> Generator[bytes, None, None]:
    sink = _Sink()
    h, w, c = plan.model.card.image_shape
    x_shape = (plan.total, h, w) if c == 1 else (plan.total, h, w, c)
    with _archive(sink) as archive:
        with archive.open(_entry("x.npy"), "w", force_zip64=plan.total * h * w * c >= _ZIP64_AT) as x:
            x.write(imaging.npy_header(np.dtype(np.uint8), x_shape))
            for _, labels, seeds in plan.batches():
                x.write(np.ascontiguousarray(plan.images(labels, seeds)).data.cast("B"))
                yield sink.drain()
        with archive.open(_entry("y.npy"), "w", force_zip64=plan.total * 8 >= _ZIP64_AT) as y:
            y.write(imaging.npy_header(np.dtype(np.int64), (plan.total,)))
            for _, labels, _ in plan.batches():
                y.write(labels.data.cast("B"))
        if plan.seeds is not None:
            seeds = plan.seeds.astype(np.int64)  # seeds are at most 2**53 - 1: int64 reads everywhere
            archive.writestr(_entry("seeds.npy"), imaging.npy(seeds))
            archive.writestr(_entry("acceptance_rate.npy"), imaging.npy(np.float64(plan.acceptance_rate)))
    yield sink.drain()


def zip_chunks(plan: DatasetPlan, compress_level: int = 1) -> Generator[bytes, None, None]:
    sink = _Sink()
    card = plan.model.card
    with _archive(sink) as archive:
        for start, labels, seeds in plan.batches():
            images = plan.images(labels, seeds)
            for k in range(len(images)):
                archive.writestr(_entry(plan.image_path(start + k)), imaging.png(images[k], compress_level))
            yield sink.drain()
        manifest = {
            "model": plan.model.name,
            "version": plan.model.version,
            "sha256": card.sha256,
            "seed": plan.seed,
            "per_label": plan.per_label,
            "labels": list(plan.labels),
            "class_names": card.class_names,
            "image_shape": card.image_shape,
            "count": plan.total,
            **({} if plan.codes is None else {"codes": plan.codes.tolist()}),
            "order": "labels in the order given, per_label each; image j (manifest.csv row j) uses seed + j"
            if plan.seeds is None
            else "labels in the order given, per_label each; image j uses the seed on manifest.csv row j",
            **plan.controls(),
        }
        archive.writestr(_entry("manifest.json"), orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        with archive.open(_entry("manifest.csv"), "w", force_zip64=plan.total * 64 >= _ZIP64_AT) as rows:
            rows.write(b"path,label,class_name,seed\n")
            for start in range(0, plan.total, _CSV_ROWS):
                text = io.StringIO()
                writer = csv.writer(text, lineterminator="\n")
                for j in range(start, min(start + _CSV_ROWS, plan.total)):
                    label = plan.labels[j // plan.per_label]
                    writer.writerow((plan.image_path(j), label, card.class_names[label], plan.seed_of(j)))
                rows.write(text.getvalue().encode())
                yield sink.drain()
    yield sink.drain()


def _tar_member(name: str, data: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0  # fixed, like the zip entries: the same samples give the same bytes
    header = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
    return header + data + tarfile.NUL * (-len(data) % tarfile.BLOCKSIZE)


def tar_end(written: int) -> bytes:
    """The end-of-archive marker (two zero blocks), padded to whole tar records like tarfile writes it."""
    end = 2 * tarfile.BLOCKSIZE
    return tarfile.NUL * (end + (-(written + end) % tarfile.RECORDSIZE))


def tar_samples(
    plan: DatasetPlan, compress_level: int = 1, start: int = 0, stop: int | None = None
) -> Generator[bytes, None, None]:
    """The tar members of samples ``[start, stop)``, one chunk per batch, without the end marker."""
    card = plan.model.card
    for first, labels, seeds in plan.batches(start, stop):
        images = plan.images(labels, seeds)
        members = []
        for k in range(len(images)):
            key, label = plan.key(first + k), int(labels[k])
            meta = {
                "label": label,
                "class_name": card.class_names[label],
                "seed": int(seeds[k]),
                "model": plan.model.name,
                "version": plan.model.version,
                **({} if plan.truncation is None else {"truncation": plan.truncation}),
            }
            members += (
                _tar_member(f"{key}.png", imaging.png(images[k], compress_level)),
                _tar_member(f"{key}.cls", str(label).encode()),
                _tar_member(f"{key}.json", orjson.dumps(meta)),
            )
        yield b"".join(members)


def tar_chunks(plan: DatasetPlan, compress_level: int = 1) -> Generator[bytes, None, None]:
    written = 0
    for chunk in tar_samples(plan, compress_level):
        written += len(chunk)
        yield chunk
    yield tar_end(written)
