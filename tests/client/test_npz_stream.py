"""The incremental npz reader against the service's own archive writer, fed in awkward chunk sizes."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from cgan_client.batches import Batcher, Collector
from cgan_client.npz_stream import ArchiveError, Header, NpzStream, Rows
from service import imaging


class _Sink(io.RawIOBase):
    """Unseekable, like the service's: zipfile writes data descriptors."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.data += b
        return len(b)


def _npz(x: np.ndarray, y: np.ndarray, zip64: bool = False) -> bytes:
    # What service.archives.npz_chunks writes: stored entries, npy headers first, descriptors after.
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in (("x.npy", x), ("y.npy", y)):
            with archive.open(
                zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), "w", force_zip64=zip64
            ) as f:
                f.write(imaging.npy_header(array.dtype, array.shape))
                f.write(array.tobytes())
    return bytes(sink.data)


@pytest.fixture
def arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (70, 28, 28), dtype=np.uint8), np.repeat(np.arange(7, dtype=np.int64), 10)


@pytest.mark.parametrize("zip64", [False, True])
@pytest.mark.parametrize("chunk", [1, 7, 1000, 1 << 20])
def test_rows_and_labels_come_out_whole(arrays, zip64: bool, chunk: int) -> None:
    x, y = arrays
    data = _npz(x, y, zip64)
    assert np.array_equal(np.load(io.BytesIO(data))["x"], x)  # the fixture is a real npz
    collector = Collector()
    for i in range(0, len(data), chunk):
        collector.feed(data[i : i + chunk])
    got_x, got_y = collector.result()
    assert np.array_equal(got_x, x) and np.array_equal(got_y, y)


def test_header_comes_before_rows_and_rows_are_in_order(arrays) -> None:
    x, y = arrays
    events = list(NpzStream().feed(_npz(x, y)))
    assert events[0] == Header(np.dtype(np.uint8), (70, 28, 28))
    starts = [e.start for e in events if isinstance(e, Rows)]
    assert starts == sorted(starts) and starts[0] == 0


def test_batcher_regroups_and_checks_labels(arrays) -> None:
    x, y = arrays
    data = _npz(x, y)
    batcher = Batcher(16, y)
    batches = [b for i in range(0, len(data), 333) for b in batcher.feed(data[i : i + 333])]
    batcher.close()
    assert [len(b[0]) for b in batches] == [16, 16, 16, 16, 6]
    assert np.array_equal(np.concatenate([b[0] for b in batches]), x)
    assert np.array_equal(np.concatenate([b[1] for b in batches]), y)
    wrong = Batcher(16, y[::-1].copy())
    with pytest.raises(ArchiveError, match="labels"):
        list(wrong.feed(data))


def test_damage_and_truncation_are_errors(arrays) -> None:
    x, y = arrays
    data = bytearray(_npz(x, y))
    cut = NpzStream()
    list(cut.feed(bytes(data[: len(data) // 2])))
    with pytest.raises(ArchiveError, match="ended early"):
        cut.close()
    data[500] ^= 0xFF  # one pixel of x flipped: the CRC-32 in its descriptor no longer matches
    with pytest.raises(ArchiveError, match="damaged"):
        list(NpzStream().feed(bytes(data)))
    with pytest.raises(ArchiveError, match="signature"):
        list(NpzStream().feed(b"PK\x05\x06" + b"\x00" * 40))
