"""``/dataset`` archives (npz, zip, tar), made batch by batch so memory does not grow with the image count.

Which images and in which order (:mod:`cgan_contract.order`): the set holds image ``j`` (its *index*) with
label ``labels[j // per_label]`` and seed ``seed + j``; the plan's ``order`` says which index is handed out
at each *position* (``"shuffled"``, the default: every window is class-balanced; ``"by_class"``: index =
position). An archive holds positions ``[start, stop)`` of that order (a *part*; all of them by default).
With ``min_confidence`` each label block's images are the ones its judge accepted
(:mod:`service.filtering`), so index ``j`` has the seed the judge kept instead of ``seed + j``. Every
format records each image's seed, so any image can be made again alone; with ``truncation`` the
manifests and each tar ``.json`` carry it too.

* ``npz``: ``order.npy`` (the order's name, a 0-d string array), ``y.npy`` int64 ``[n]``, ``seeds.npy``
  int64 ``[n]``, then ``x.npy`` uint8 ``[n, H, W]`` (``[n, H, W, C]`` when C > 1), rows in the order handed
  out, and with ``min_confidence`` ``acceptance_rate.npy`` (float64 ``[1]``); stored uncompressed. Labels and
  seeds come first, so a reader knows them before the first row, and the ``x`` header carries the final
  shape up front, so rows are written as they are made.
* ``zip``: ``<class_name>/<k>.png`` with ``k`` the image's place within its label block (the same path in
  every order), entries in the order handed out, plus ``manifest.json`` (what was asked) and
  ``manifest.csv`` (path, label, class_name, seed, index per image, in the order handed out). Folders are
  the card's class names, made path-safe, so an image-folder loader (Hugging Face ``imagefolder``,
  torchvision ``ImageFolder``) labels by class name; when two names would share a folder, every folder is
  ``<class_index>_<class_name>`` instead.
* ``tar``: a WebDataset shard. The sample at position ``p`` has the key ``p`` zero-padded to the digits of
  ``N - 1``, with ``<key>.png``, ``<key>.cls`` (the label as decimal text) and ``<key>.json`` (label,
  class_name, seed, index, model, version), in that order. No other members, so every entry of the tar is a
  sample. The bulk generator (:mod:`service.bulk`) writes a contiguous run ``[start, stop)`` of the same
  positions with the same keys, so its shards and a ``/dataset`` tar agree entry for entry.

Entries carry a fixed timestamp, so the same request gives byte-identical archives. A zip holds one
central-directory record per entry until it closes, roughly 0.5 KB per image in ``zip`` format.
"""

from __future__ import annotations

import csv
import functools
import io
import re
import tarfile
import zipfile
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import orjson

import cgan_contract as contract
from cgan_contract.order import Order
from service import imaging
from service.models import LoadedModel

_EPOCH = (1980, 1, 1, 0, 0, 0)
_ZIP64_AT = 1 << 31  # below zipfile's own 4 GiB limit, leaving room for headers and the manifest


class Batch(NamedTuple):
    """Up to ``plan.batch`` consecutive positions: the first one, and each image's index, label and seed."""

    first: int
    indices: np.ndarray
    labels: np.ndarray
    seeds: np.ndarray


@functools.cache
def _lookahead() -> ThreadPoolExecutor:
    """The threads that make an archive's next batch while its current one is encoded (one per core: every
    stream in this process may have one batch in flight)."""
    from service.config import available_cores

    return ThreadPoolExecutor(available_cores(), thread_name_prefix="archive-ahead")


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
    order: Order = contract.DEFAULT_ORDER
    #: The positions ``[start, stop)`` this archive holds (``stop`` None: to the end).
    start: int = 0
    stop: int | None = None
    #: With min_confidence: the seed of every index (uint64 ``[size]``) and how many candidates were judged.
    seeds: np.ndarray | None = field(default=None, compare=False)
    min_confidence: float | None = None
    examined: int | None = None
    #: Pieces of a batch run at once, each on one onnxruntime thread (the model's lane session, when it has
    #: one): an archive is one long stream, and one two-thread run per piece left a core idle half the time.
    parallel: int = 1

    @property
    def size(self) -> int:
        """Images in the whole set, ``len(labels) * per_label``."""
        return len(self.labels) * self.per_label

    @property
    def end(self) -> int:
        return self.size if self.stop is None else self.stop

    @property
    def total(self) -> int:
        """Images in this archive."""
        return self.end - self.start

    def indices(self, start: int, stop: int) -> np.ndarray:
        """The index of the image at each position ``[start, stop)``."""
        positions = np.arange(start, stop, dtype=np.int64)
        return contract.image_indices(positions, len(self.labels), self.per_label, self.seed, self.order)

    def batches(self, start: int | None = None, stop: int | None = None) -> Iterator[Batch]:
        """The positions ``[start, stop)`` (this archive's by default) in batches of at most ``batch``."""
        start = self.start if start is None else start
        stop = self.end if stop is None else stop
        label_of_block = np.asarray(self.labels, dtype=np.int64)
        for first in range(start, stop, self.batch):
            index = self.indices(first, min(first + self.batch, stop))
            yield Batch(first, index, label_of_block[index // self.per_label], self.seeds_of(index))

    def seeds_of(self, index: np.ndarray) -> np.ndarray:
        """uint64 seeds of the images ``index``: ``seed + j``, or with min_confidence the judge's pick."""
        return contract.index_seeds(self.seed, index) if self.seeds is None else self.seeds[index]

    @property
    def acceptance_rate(self) -> float | None:
        return None if self.examined is None else self.size / self.examined

    def generated(
        self, start: int | None = None, stop: int | None = None
    ) -> Iterator[tuple[Batch, np.ndarray]]:
        """:meth:`batches` with their :meth:`images`. With ``parallel``, the next batch is made while the
        caller encodes this one (encoding is one thread's work; the model's pieces use every core), so at
        most two batches are held; a caller that stops early waits for the one in flight, never more."""
        if self.parallel <= 1:
            for batch in self.batches(start, stop):
                yield batch, self.images(batch)
            return
        ahead = _lookahead()
        batches = self.batches(start, stop)
        batch = next(batches, None)
        pending = None if batch is None else ahead.submit(self.images, batch)
        try:
            while batch is not None and pending is not None:
                following = next(batches, None)
                images = pending.result()
                pending = None if following is None else ahead.submit(self.images, following)
                yield batch, images
                batch = following
        finally:
            if pending is not None:
                pending.cancel() or pending.exception()  # not cancelled once running: let it end here

    def images(self, batch: Batch) -> np.ndarray:
        """The images of a batch from :meth:`batches`, made with the request's codes and quality controls."""
        codes = None if self.codes is None else np.tile(self.codes, (len(batch.seeds), 1))
        if self.parallel > 1:
            model = self.model.on_lanes
            return model.generate(batch.labels, batch.seeds, codes, self.truncation, parallel=self.parallel)
        return self.model.generate(batch.labels, batch.seeds, codes, self.truncation)

    def controls(self) -> dict[str, float | int]:
        """The quality controls asked for, and what filtering took, for manifests (empty when none)."""
        found: dict[str, float | int] = {}
        if self.truncation is not None:
            found["truncation"] = self.truncation
        if self.min_confidence is not None and self.examined is not None:
            found |= {
                "min_confidence": self.min_confidence,
                "acceptance_rate": self.size / self.examined,
                "candidates_judged": self.examined,
            }
        return found

    def __post_init__(self) -> None:
        # Paths are built per image; the folder names and digit widths are worked out once.
        names = self.model.card.class_names
        object.__setattr__(self, "_folders", folders(self.labels, names))
        object.__setattr__(self, "_width", len(str(self.per_label - 1)))
        object.__setattr__(self, "_key_width", len(str(self.size - 1)))

    def image_path(self, j: int) -> str:
        """The zip path of image ``j``: its class folder and its place in its label block."""
        return f"{self._folders[self.labels[j // self.per_label]]}/{j % self.per_label:0{self._width}d}.png"

    def key(self, position: int) -> str:
        """The WebDataset key of the sample at ``position``: fixed width, so keys sort in the order handed
        out."""
        return f"{position:0{self._key_width}d}"

    def filename(self, fmt: str) -> str:
        part = "" if self.total == self.size else f"-{self.start}-{self.end}"
        return f"{self.model.name}-v{self.model.version}-seed{self.seed}{part}.{fmt}"


def folders(labels: tuple[int, ...], class_names: list[str]) -> dict[int, str]:
    """Each label's zip folder: its class name made path-safe (``T-shirt/top`` -> ``T-shirt_top``); when two
    would share a folder (or one is empty), ``<index>_<name>`` for all, which is always unique."""
    safe = {label: re.sub(r"[^A-Za-z0-9._ -]+", "_", class_names[label]).strip("._- ") for label in labels}
    if all(safe.values()) and len(set(safe.values())) == len(safe):
        return safe
    return {label: f"{label}_{name or 'class'}" for label, name in safe.items()}


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


def npz_chunks(plan: DatasetPlan, compress_level: int = 1) -> Generator[bytes, None, None]:
    """The npz (``compress_level`` is unused: the pixels are stored raw, like every entry)."""
    sink = _Sink()
    h, w, c = plan.model.card.image_shape
    x_shape = (plan.total, h, w) if c == 1 else (plan.total, h, w, c)
    index = plan.indices(plan.start, plan.end)  # 8 bytes an image: labels and seeds go out before the rows
    with _archive(sink) as archive:
        archive.writestr(_entry("order.npy"), imaging.npy(np.array(plan.order)))
        archive.writestr(
            _entry("y.npy"), imaging.npy(np.asarray(plan.labels, np.int64)[index // plan.per_label])
        )
        # seeds are at most 2**53 - 1: int64 reads everywhere
        archive.writestr(_entry("seeds.npy"), imaging.npy(plan.seeds_of(index).astype(np.int64)))
        del index
        with archive.open(_entry("x.npy"), "w", force_zip64=plan.total * h * w * c >= _ZIP64_AT) as x:
            x.write(imaging.npy_header(np.dtype(np.uint8), x_shape))
            for _, images in plan.generated():
                x.write(np.ascontiguousarray(images).data.cast("B"))
                yield sink.drain()
        if plan.acceptance_rate is not None:
            archive.writestr(_entry("acceptance_rate.npy"), imaging.npy(np.array([plan.acceptance_rate])))
    yield sink.drain()


def zip_chunks(plan: DatasetPlan, compress_level: int = 1) -> Generator[bytes, None, None]:
    sink = _Sink()
    card = plan.model.card
    with _archive(sink) as archive:
        for batch, images in plan.generated():
            for k, j in enumerate(batch.indices.tolist()):
                archive.writestr(_entry(plan.image_path(j)), imaging.png(images[k], compress_level))
            yield sink.drain()
        manifest = {
            "model": plan.model.name,
            "version": plan.model.version,
            "sha256": card.sha256,
            "seed": plan.seed,
            "per_label": plan.per_label,
            "labels": list(plan.labels),
            "class_names": card.class_names,
            "folders": [
                plan.image_path(b * plan.per_label).rpartition("/")[0] for b in range(len(plan.labels))
            ],
            "image_shape": card.image_shape,
            "count": plan.total,
            "order": plan.order,
            "positions": [plan.start, plan.end],
            "rule": "image j of the set (manifest.csv column index) has label labels[j // per_label], seed "
            + ("seed + j" if plan.seeds is None else "the one on its manifest.csv row (min_confidence)")
            + "; manifest.csv rows are in the order the images were handed out",
            **({} if plan.codes is None else {"codes": plan.codes.tolist()}),
            **plan.controls(),
        }
        archive.writestr(_entry("manifest.json"), orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        with archive.open(_entry("manifest.csv"), "w", force_zip64=plan.total * 64 >= _ZIP64_AT) as rows:
            rows.write(b"path,label,class_name,seed,index\n")
            for batch in plan.batches():
                text = io.StringIO()
                writer = csv.writer(text, lineterminator="\n")
                rows_of = zip(
                    batch.indices.tolist(), batch.labels.tolist(), batch.seeds.tolist(), strict=True
                )
                for j, label, seed in rows_of:
                    writer.writerow((plan.image_path(j), label, card.class_names[label], seed, j))
                rows.write(text.getvalue().encode())
                yield sink.drain()
    yield sink.drain()


def _tarfile_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0  # fixed, like the zip entries: the same samples give the same bytes
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")


# The header tarfile writes for a member, as a template: only the name, the size and the checksum vary.
# tarfile builds it in ~23 us, three members per sample; filled in here it takes ~1 (a tar /dataset spent
# about half its encoding time in tobuf). The checksum is the sum of the header's bytes with its own field
# read as spaces, so it is the template's sum plus what the name and size add.
_TAR_EMPTY = _tarfile_header("", 0)
_TAR_MIDDLE = _TAR_EMPTY[100:124]  # mode, uid, gid
_TAR_TAIL = _TAR_EMPTY[136:148]  # mtime
_TAR_REST = _TAR_EMPTY[156:]  # type, link name, magic, version, owner names, devices, prefix
_TAR_SUM = sum(_TAR_EMPTY) - sum(_TAR_EMPTY[148:156]) + sum(b" " * 8) - sum(_TAR_EMPTY[124:136])
_TAR_NAME_MAX, _TAR_SIZE_MAX = 100, 8**11 - 1


def _tar_header(name: str, size: int) -> bytes:
    """tarfile's USTAR header for a regular file of ``size`` bytes, mode 644, mtime 0 (byte for byte)."""
    raw = name.encode()
    if len(raw) > _TAR_NAME_MAX or not raw.isascii() or not 0 <= size <= _TAR_SIZE_MAX:
        return _tarfile_header(name, size)  # a prefix split, another encoding, or a base-256 size
    size_field = b"%011o\x00" % size
    checksum = _TAR_SUM + sum(raw) + sum(size_field)
    return b"".join(
        (
            raw.ljust(_TAR_NAME_MAX, tarfile.NUL),
            _TAR_MIDDLE,
            size_field,
            _TAR_TAIL,
            b"%06o\x00 " % checksum,
            _TAR_REST,
        )
    )


def _tar_member(name: str, data: bytes) -> bytes:
    header = _tar_header(name, len(data))
    return header + data + tarfile.NUL * (-len(data) % tarfile.BLOCKSIZE)


def tar_end(written: int) -> bytes:
    """The end-of-archive marker (two zero blocks), padded to whole tar records like tarfile writes it."""
    end = 2 * tarfile.BLOCKSIZE
    return tarfile.NUL * (end + (-(written + end) % tarfile.RECORDSIZE))


def tar_samples(
    plan: DatasetPlan, compress_level: int = 1, start: int | None = None, stop: int | None = None
) -> Generator[bytes, None, None]:
    """The tar members of the samples at positions ``[start, stop)`` (the plan's by default), one chunk per
    batch, without the end marker."""
    card = plan.model.card
    for batch, images in plan.generated(start, stop):
        members = []
        for k, (j, label, seed) in enumerate(
            zip(batch.indices.tolist(), batch.labels.tolist(), batch.seeds.tolist(), strict=True)
        ):
            key = plan.key(batch.first + k)
            meta = {
                "label": label,
                "class_name": card.class_names[label],
                "seed": seed,
                "index": j,
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
