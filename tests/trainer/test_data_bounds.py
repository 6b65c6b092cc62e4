"""Readers stop at the size a header declares (issue #32 row 10): a small file that claims little and
inflates to much more is refused after reading at most the declared bytes and one more, never read whole.

Memory is checked by counting the bytes the reader pulls out of its file (the inflated bytes, for gzip and
deflated zip members), not by RSS: the count bounds what the reader can have held."""

from __future__ import annotations

import gzip
import io
import struct
import zipfile

import numpy as np
import pytest

from trainer import data
from trainer.data import DataError, read_idx, read_npz

#: What the crafted files hold beyond their header's claim: zeros, so they stay small on disk.
EXTRA = 50 << 20
#: Readers may read in blocks; what they pull must stay near the claim, far below the EXTRA held.
SLACK = 1 << 20


class Counting(io.RawIOBase):
    """A file that counts the bytes read through it."""

    def __init__(self, inner) -> None:
        self.inner, self.count = inner, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        block = self.inner.read(size)
        self.count += len(block)
        return block

    def readinto(self, buffer) -> int:
        block = self.read(len(buffer))
        buffer[: len(block)] = block
        return len(block)

    def close(self) -> None:
        self.inner.close()
        super().close()


def _idx_claiming(shape: tuple[int, ...], held: int) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, len(shape)) + struct.pack(f">{len(shape)}I", *shape) + bytes(held)


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "plain"])
def test_an_idx_file_holding_more_than_its_header_says_is_refused_early(tmp_path, monkeypatch, compress):
    declared = 1000 * 28 * 28
    payload = _idx_claiming((1000, 28, 28), declared + EXTRA)
    path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if compress else ""))
    path.write_bytes(gzip.compress(payload, compresslevel=1) if compress else payload)
    opened: list[Counting] = []
    real_open = data._open

    def counting_open(p):
        opened.append(Counting(real_open(p)))
        return opened[-1]

    monkeypatch.setattr(data, "_open", counting_open)
    with pytest.raises(DataError) as refused:
        read_idx(path)
    assert opened[0].count <= 16 + declared + SLACK, f"read {opened[0].count} bytes of {len(payload)}"
    assert "more than" in str(refused.value) and str(declared) in str(refused.value)
    assert "\n" not in str(refused.value)


def test_an_idx_file_of_exactly_its_declared_size_loads_and_a_short_one_is_refused(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(_idx_claiming((5,), 0) + bytes(range(5))))
    assert read_idx(path).tolist() == [0, 1, 2, 3, 4]
    path.write_bytes(gzip.compress(_idx_claiming((5,), 4)))
    with pytest.raises(DataError, match="header says 5 bytes of data, file has 4"):
        read_idx(path)


def _npz_with_long_member(path, held: int) -> int:
    """keras-style arrays whose ``x_test`` claims 2 images and holds ``held`` bytes more."""
    declared = 2 * 28 * 28
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for key, array in {
            "x_train": np.zeros((6, 28, 28), np.uint8),
            "y_train": np.arange(6) % 3,
            "y_test": np.arange(2),
        }.items():
            buffer = io.BytesIO()
            np.save(buffer, array)
            archive.writestr(f"{key}.npy", buffer.getvalue())
        with archive.open("x_test.npy", "w") as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "|u1", "fortran_order": False, "shape": (2, 28, 28)}
            )
            member.write(bytes(declared))
            for _ in range(held // (1 << 20)):
                member.write(bytes(1 << 20))
    return declared


def test_an_npz_member_holding_more_than_its_header_says_is_refused_early(tmp_path, monkeypatch):
    path = tmp_path / "set.npz"
    declared = _npz_with_long_member(path, EXTRA)
    assert path.stat().st_size < 1 << 20  # small on disk, 50 MB inflated
    pulled: dict[str, int] = {}
    real_read = zipfile.ZipExtFile.read

    def counting_read(self, n=-1):
        block = real_read(self, n)
        pulled[self.name] = pulled.get(self.name, 0) + len(block)
        return block

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting_read)
    with pytest.raises(DataError) as refused:
        read_npz(path)
    assert pulled["x_test.npy"] <= 128 + declared + SLACK, f"read {pulled['x_test.npy']} bytes"
    assert "holds more" in str(refused.value) and "x_test" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_npz_members_of_their_declared_size_still_load(tmp_path):
    path = tmp_path / "set.npz"
    _npz_with_long_member(path, 0)
    arrays = read_npz(path)
    assert arrays["x_test"].shape == (2, 28, 28) and arrays["y_train"].tolist() == [0, 1, 2, 0, 1, 2]
