"""Reading the ``/dataset`` npz while it downloads: the small members whole, then ``x`` rows as they arrive.

The service streams the npz as a zip of stored (uncompressed) entries, each with a data descriptor after its
bytes (the service cannot know sizes up front): ``order.npy``, ``y.npy`` and ``seeds.npy`` first, then
``x.npy``, then any others (``acceptance_rate.npy``). Each ``.npy`` header states its shape, which says where
its data ends, so the archive parses front to back without seeking and without ever holding it whole; each
entry's CRC-32 and size are checked against its descriptor. The central directory at the end repeats what
was already read and is skipped.

The bytes come from a server, so nothing in them is trusted: shapes must be whole and non-negative, dtypes
plain numbers or text, sizes within what an array can hold, and a member other than ``x`` is at most
:data:`MAX_MEMBER_BYTES`. Whatever is wrong with them is an :class:`ArchiveError`, never numpy's own
ValueError, OverflowError or MemoryError. :func:`read_npy` holds ``/generate``'s single ``.npy`` to the
same rules.
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
_CENTRAL = 0x02014B50
_DESCRIPTOR = 0x08074B50
_NPY_MAGIC = b"\x93NUMPY"
_ZIP64_EXTRA = 0x0001
#: The rows, streamed; every other member is read whole.
ROWS = "x"
#: Members other than ``x`` are small (8 bytes an image at most); a larger one is not the service's npz.
MAX_MEMBER_BYTES = 64 << 20


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
class Member:
    """A member other than ``x``, whole: ``name`` without ``.npy`` (``y``, ``seeds``, ``order``, ...)."""

    name: str
    array: np.ndarray


Event = Header | Rows | Member


class NpzStream:
    """Push parser: :meth:`feed` bytes as they arrive and iterate the events each call completes."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._state = "local"
        self._name = ""
        self._seen: set[str] = set()
        self._zip64 = False
        self._has_descriptor = False
        self._crc = 0
        self._size = 0
        self._remaining = 0
        self._dtype = np.dtype(np.uint8)
        self._shape: tuple[int, ...] = ()
        self._row_bytes = 1
        self._rows_done = 0
        self._parts: list[bytes] = []

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
        if ROWS not in self._seen:
            raise ArchiveError("the archive holds no x.npy")

    # Each state returns an event, True to keep going with nothing to report, or None for "need more bytes".

    def _take(self, n: int) -> bytes | None:
        if len(self._buffer) < n:
            return None
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    def _local(self) -> Event | bool | None:
        if len(self._buffer) < 4:
            return None
        (signature,) = struct.unpack_from("<I", self._buffer)
        if signature == _CENTRAL:
            self._state = "done"
            return True
        if len(self._buffer) < 30:
            return None
        _, _, flags, method, _, _, _, _, _, name_len, extra_len = struct.unpack_from(
            "<IHHHHHIIIHH", self._buffer
        )
        if signature != _LOCAL:
            raise ArchiveError(f"expected a zip entry, got signature {signature:#x}")
        head = self._take(30 + name_len + extra_len)
        if head is None:
            return None
        if method != 0:
            raise ArchiveError(f"entry compressed with method {method}; the service stores entries")
        name = head[30 : 30 + name_len].decode(errors="replace")
        if not name.endswith(".npy") or name[:-4] in self._seen:
            raise ArchiveError(f"unexpected entry {name!r}: the service writes each .npy member once")
        self._name = name[:-4]
        self._seen.add(self._name)
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
            raise ArchiveError(f"{self._name}.npy is not a .npy file")
        major = self._buffer[6]
        length_size = 2 if major == 1 else 4
        if len(self._buffer) < 8 + length_size:
            return None
        (header_len,) = struct.unpack_from("<H" if length_size == 2 else "<I", self._buffer, 8)
        if header_len > 1 << 16:
            raise ArchiveError(f"{self._name}.npy has a {header_len}-byte header")
        raw = self._take(8 + length_size + header_len)
        if raw is None:
            return None
        self._count(raw)
        dtype, shape = _header(f"{self._name}.npy", raw[8 + length_size :])
        self._dtype, self._shape = dtype, shape
        self._remaining = math.prod(shape) * dtype.itemsize
        if self._name != ROWS and self._remaining > MAX_MEMBER_BYTES:
            raise ArchiveError(f"{self._name}.npy claims {self._remaining} bytes; at most {MAX_MEMBER_BYTES}")
        self._row_bytes = max(1, math.prod(shape[1:]) * dtype.itemsize)
        self._parts = []
        self._state = "data"
        if self._name == ROWS:
            if not shape:
                raise ArchiveError("x.npy is not an array of rows")
            return Header(dtype, shape)
        return True

    def _data(self) -> Event | bool | None:
        if self._name != ROWS:  # small: kept until it is whole
            if self._remaining:
                part = self._take(min(self._remaining, len(self._buffer)))
                if not part:
                    return None
                self._count(part)
                self._remaining -= len(part)
                self._parts.append(part)
                return True
            self._state = "descriptor"
            array = np.frombuffer(b"".join(self._parts), self._dtype).reshape(self._shape)
            return Member(self._name, array)
        if self._remaining == 0:
            self._state = "descriptor"
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
            raise ArchiveError(f"{self._name}.npy has sizes up front; the service streams with descriptors")
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
            raise ArchiveError(f"{self._name}.npy is damaged: CRC-32 or size does not match its descriptor")
        self._state = "local"
        return True

    def _done(self) -> None:
        self._buffer.clear()  # the central directory: nothing in it that was not already checked
        return None

    def _count(self, data: bytes) -> None:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)


def read_npy(content: bytes, what: str = "the response") -> np.ndarray:
    """A whole ``.npy`` (``/generate``'s body) as a writable array, or :class:`ArchiveError`: the header
    held to the rules of the streamed npz, and the data exactly the size the header declares."""
    if content[:6] != _NPY_MAGIC or len(content) < 10:
        raise ArchiveError(f"{what} is not a .npy file")
    major = content[6]
    if major not in (1, 2, 3):
        raise ArchiveError(f"{what} is a .npy of unknown format version {major}")
    length_size = 2 if major == 1 else 4
    start = 8 + length_size
    (header_len,) = struct.unpack_from("<H" if length_size == 2 else "<I", content.ljust(start, b"\0"), 8)
    dtype, shape = _header(what, content[start : start + header_len])
    start += header_len
    size = math.prod(shape) * dtype.itemsize
    if len(content) - start != size:
        raise ArchiveError(f"{what} holds {max(len(content) - start, 0)} bytes; its header says {size}")
    if size == 0:
        return np.zeros(shape, dtype)
    return np.frombuffer(content, dtype, count=math.prod(shape), offset=start).reshape(shape).copy()


#: The most bytes a numpy array can hold (its size is a signed pointer-sized integer).
_MAX_ARRAY_BYTES = np.iinfo(np.intp).max


def _header(what: str, text: bytes) -> tuple[np.dtype, tuple[int, ...]]:
    """A ``.npy`` header's dtype and shape, refused unless plain numbers or text in C order, of a size an
    array can have. ``what`` names the ``.npy`` in messages."""
    try:
        header = ast.literal_eval(text.decode("latin1"))
        dtype = np.dtype(header["descr"])
        shape = tuple(header["shape"])
    except (
        ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError, OverflowError
    ) as e:  # fmt: skip
        raise ArchiveError(f"{what} has an unreadable header: {' '.join(str(e).split())}") from None
    if header.get("fortran_order"):
        raise ArchiveError(f"{what} is in Fortran order")
    if dtype.hasobject or dtype.kind not in "biufU" or dtype.itemsize == 0:
        raise ArchiveError(f"{what} holds {dtype}, not numbers or text")
    if not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 40 for d in shape):
        raise ArchiveError(f"{what} has an impossible shape {shape!r}")
    size = math.prod(shape) * dtype.itemsize
    if size > _MAX_ARRAY_BYTES:
        raise ArchiveError(f"{what} claims {size} bytes, more than an array can hold")
    return dtype, shape


def _has_zip64(extra: bytes) -> bool:
    offset = 0
    while offset + 4 <= len(extra):
        kind, size = struct.unpack_from("<HH", extra, offset)
        if kind == _ZIP64_EXTRA:
            return True
        offset += 4 + size
    return False
