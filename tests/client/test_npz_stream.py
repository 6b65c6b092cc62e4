"""The incremental npz reader against the service's layout (small members, then x), fed in awkward chunk
sizes, and against archives a hostile or broken server could send."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from cgan_client.batches import Collector, RowBatches
from cgan_client.npz_stream import ArchiveError, Header, Member, NpzStream, Rows
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


def _npz(
    x: np.ndarray,
    y: np.ndarray,
    zip64: bool = False,
    members: list[str] | None = None,
    **replaced: np.ndarray,
) -> bytes:
    # The layout of service.archives.npz_chunks: stored entries, npy headers first, descriptors after;
    # order, y and seeds before x.
    arrays = {"order": np.array("shuffled"), "y": y, "seeds": np.arange(len(y), dtype=np.int64), "x": x}
    arrays |= replaced
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name in members or list(arrays):
            array = arrays[name]
            with archive.open(
                zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), "w", force_zip64=zip64
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


def test_small_members_come_whole_then_the_header_then_rows_in_order(arrays) -> None:
    x, y = arrays
    events = list(NpzStream().feed(_npz(x, y, acceptance_rate=np.array([0.5]))))
    assert [e.name for e in events[:3]] == ["order", "y", "seeds"]
    assert str(events[0].array) == "shuffled" and np.array_equal(events[1].array, y)
    assert events[3] == Header(np.dtype(np.uint8), (70, 28, 28))
    starts = [e.start for e in events if isinstance(e, Rows)]
    assert starts == sorted(starts) and starts[0] == 0
    assert isinstance(events[-1], Member) and events[-1].name == "acceptance_rate"


def test_row_batches_regroup_with_the_labels_sent_first(arrays) -> None:
    x, y = arrays
    data = _npz(x, y)
    row_batches = RowBatches(16)
    batches = [b for i in range(0, len(data), 333) for b in row_batches.feed(data[i : i + 333])]
    row_batches.close()
    assert [len(b[0]) for b in batches] == [16, 16, 16, 16, 6]
    assert np.array_equal(np.concatenate([b[0] for b in batches]), x)
    assert np.array_equal(np.concatenate([b[1] for b in batches]), y)
    assert row_batches.order == "shuffled"


@pytest.mark.parametrize(
    "members,extra,match",
    [
        (["order", "x", "y", "seeds"], {}, "y.npy must come before x.npy"),
        (["order", "y", "x"], {}, "seeds.npy must come before x.npy"),
        (["y", "seeds", "x"], {"seeds": np.zeros(20, np.int64)}, "seeds.npy is \\[20\\]; x.npy has 70 rows"),
        (["y", "y", "seeds", "x"], {}, "each .npy member once"),
        (["y", "seeds", "x"], {"seeds": np.zeros((70, 2), np.int64)}, "seeds.npy is \\[70, 2\\]"),
        (["y", "seeds"], {}, "no x.npy"),
    ],
)
def test_archives_a_bad_server_could_send_are_refused(arrays, members, extra, match) -> None:
    x, y = arrays
    for consumer in (RowBatches(8), Collector()):
        with pytest.raises(ArchiveError, match=match):
            for _ in consumer.feed(_npz(x, y, members=members, **extra)) or ():
                pass
            consumer.close()
            consumer.result() if isinstance(consumer, Collector) else None


@pytest.mark.parametrize(
    "header,match",
    [
        ("{'descr': '|O', 'fortran_order': False, 'shape': (3,)}", "not numbers or text"),
        ("{'descr': '|u1', 'fortran_order': False, 'shape': (-3, 28)}", "impossible shape"),
        ("{'descr': '|u1', 'fortran_order': False, 'shape': (float('inf'),)}", "unreadable header"),
        (
            "{'descr': '|u1', 'fortran_order': False, 'shape': (4611686018427387904, 4611686018427387904)}",
            "impossible shape",
        ),
        ("{'descr': '<i8', 'fortran_order': False, 'shape': (1073741824,)}", "at most"),
        ("{'descr': '|u1', 'fortran_order': True, 'shape': (3,)}", "Fortran order"),
    ],
)
def test_crafted_headers_are_archive_errors(header: str, match: str) -> None:
    text = header.encode("latin1")
    raw = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text
    sink = _Sink()
    with (
        zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive,
        archive.open(zipfile.ZipInfo("y.npy"), "w") as f,
    ):
        f.write(raw)
    with pytest.raises(ArchiveError, match=match):
        list(NpzStream().feed(bytes(sink.data)))


def test_damage_and_truncation_are_errors(arrays) -> None:
    x, y = arrays
    data = bytearray(_npz(x, y))
    cut = NpzStream()
    list(cut.feed(bytes(data[: len(data) // 2])))
    with pytest.raises(ArchiveError, match="ended early"):
        cut.close()
    data[-1500] ^= 0xFF  # one pixel of x flipped: the CRC-32 in its descriptor no longer matches
    with pytest.raises(ArchiveError, match="damaged"):
        list(NpzStream().feed(bytes(data)))
    with pytest.raises(ArchiveError, match="signature"):
        list(NpzStream().feed(b"PK\x05\x06" + b"\x00" * 40))
