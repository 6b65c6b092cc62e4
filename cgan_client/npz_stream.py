"""Reading the ``/dataset`` npz while it downloads: ``x`` rows as soon as they are whole, then ``y``.

The service streams the npz as a zip of two stored (uncompressed) entries, ``x.npy`` then ``y.npy``, each
with a data descriptor after its bytes (the service cannot know sizes up front). Each ``.npy`` header
states its shape, which says where its data ends, so the archive parses front to back without seeking
and without ever holding it whole; each entry's CRC-32 and size are checked against its descriptor. The
central directory at the end repeats what was already read and is skipped.
"""

from __future__ import annotations

import ast
import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

_LOCAL = 0x04034B50
_DESCRIPTOR = 0x08074B50
_NPY_MAGIC = b"\x93NUMPY"
_ZIP64_EXTRA = 0x0001


class ArchiveError(ValueError):
    """The bytes are not the npz the service streams (or were damaged on the way)."""


@dataclass(frozen=True)
class Rows:
    """``x`` rows ``[k, H, W(, C)]`` starting at row ``start``."""

    start: int
    rows: np.ndarray


@dataclass(frozen=True)
class Header:
    """``x``'s dtype and full shape, known before its first row."""

    dtype: np.dtype
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Labels:
    """All of ``y`` (int64 ``[N]``), which the service writes after ``x``."""

    y: np.ndarray


Event = Header | Rows | Labels


class NpzStream:
    """Push parser: :meth:`feed` bytes as they arrive and iterate the events each call completes."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._state = "local"
        self._entries = 0
        self._name = ""
        self._zip64 = False
        self._has_descriptor = False
        self._crc = 0
        self._size = 0
        self._remaining = 0
        self._dtype = np.dtype(np.uint8)
        self._shape: tuple[int, ...] = ()
        self._row_bytes = 1
        self._rows_done = 0
        self._y_parts: list[bytes] = []

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> Iterator[Event]:
        self._buffer += data
        while True:
            step = getattr(self, f"_{self._state}")()
            if step is None:
                return
            if step is not True:
                yield step

    def close(self) -> None:
        """Call at the end of the stream: an archive that stopped early is an error, not a short dataset."""
        if self._state != "done":
            raise ArchiveError(f"the archive ended early (while reading {self._name or 'a header'})")

    # Each state returns an event, True to keep going with nothing to report, or None for "need more bytes".

    def _take(self, n: int) -> bytes | None:
        if len(self._buffer) < n:
            return None
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    def _local(self) -> Event | bool | None:
        if len(self._buffer) < 30:
            return None
        signature, _, flags, method, _, _, _, _, _, name_len, extra_len = struct.unpack_from(
            "<IHHHHHIIIHH", self._buffer
        )
        if signature != _LOCAL:
            raise ArchiveError(f"expected a zip entry, got signature {signature:#x}")
        head = self._take(30 + name_len + extra_len)
        if head is None:
            return None
        if method != 0:
            raise ArchiveError(f"entry compressed with method {method}; the service stores entries")
        self._name = head[30 : 30 + name_len].decode()
        want = ("x.npy", "y.npy")[self._entries]
        if self._name != want:
            raise ArchiveError(f"entry {self._entries} is {self._name!r}, expected {want!r}")
        extra = head[30 + name_len :]
        self._zip64 = _has_zip64(extra)
        self._has_descriptor = bool(flags & 0x08)
        self._crc, self._size = 0, 0
        self._state = "npy"
        return True

    def _npy(self) -> Event | bool | None:
        if len(self._buffer) < 10:
            return None
        if bytes(self._buffer[:6]) != _NPY_MAGIC:
            raise ArchiveError(f"{self._name} is not a .npy file")
        major = self._buffer[6]
        length_size = 2 if major == 1 else 4
        if len(self._buffer) < 8 + length_size:
            return None
        (header_len,) = struct.unpack_from("<H" if length_size == 2 else "<I", self._buffer, 8)
        raw = self._take(8 + length_size + header_len)
        if raw is None:
            return None
        self._count(raw)
        try:
            header = ast.literal_eval(raw[8 + length_size :].decode("latin1"))
            dtype, shape = np.dtype(header["descr"]), tuple(int(d) for d in header["shape"])
        except (ValueError, SyntaxError, KeyError, TypeError) as e:
            raise ArchiveError(f"{self._name} has an unreadable header: {e}") from None
        if header.get("fortran_order"):
            raise ArchiveError(f"{self._name} is in Fortran order")
        self._dtype, self._shape = dtype, shape
        self._remaining = math.prod(shape) * dtype.itemsize
        self._row_bytes = max(1, math.prod(shape[1:]) * dtype.itemsize)
        self._state = "data"
        return Header(dtype, shape) if self._entries == 0 else True

    def _data(self) -> Event | bool | None:
        if self._remaining == 0:
            self._state = "descriptor"
            if self._entries == 1:
                return Labels(np.frombuffer(b"".join(self._y_parts), self._dtype).reshape(self._shape))
            return True
        if self._entries == 1:  # y: small (8 bytes an image), kept until it is whole
            part = self._take(min(self._remaining, len(self._buffer)))
            if not part:
                return None
            self._count(part)
            self._remaining -= len(part)
            self._y_parts.append(part)
            return True
        whole = min(self._remaining, len(self._buffer)) // self._row_bytes * self._row_bytes
        if whole == 0:
            return None
        part = self._take(whole)
        assert part is not None
        self._count(part)
        self._remaining -= whole
        rows = np.frombuffer(part, self._dtype).reshape(-1, *self._shape[1:])
        start, self._rows_done = self._rows_done, self._rows_done + len(rows)
        return Rows(start, rows)

    def _descriptor(self) -> Event | bool | None:
        if not self._has_descriptor:
            raise ArchiveError(f"{self._name} has sizes up front; the service streams with descriptors")
        if len(self._buffer) < 4:
            return None
        signed = struct.unpack_from("<I", self._buffer)[0] == _DESCRIPTOR
        layout = ("<I" if signed else "") + ("IQQ" if self._zip64 else "III")
        record = self._take(struct.calcsize("<" + layout.lstrip("<")))
        if record is None:
            return None
        fields = struct.unpack("<" + layout.lstrip("<"), record)[1 if signed else 0 :]
        crc, compressed, size = fields
        if crc != self._crc or size != self._size or compressed != self._size:
            raise ArchiveError(f"{self._name} is damaged: CRC-32 or size does not match its descriptor")
        self._entries += 1
        self._state = "local" if self._entries < 2 else "done"
        return True

    def _done(self) -> None:
        self._buffer.clear()  # the central directory: nothing in it that was not already checked
        return None

    def _count(self, data: bytes) -> None:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)


def _has_zip64(extra: bytes) -> bool:
    offset = 0
    while offset + 4 <= len(extra):
        kind, size = struct.unpack_from("<HH", extra, offset)
        if kind == _ZIP64_EXTRA:
            return True
        offset += 4 + size
    return False
