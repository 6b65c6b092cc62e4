"""Dataset loaders on tiny generated fixtures, plus the real offline mnist-5k."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from trainer.data import DIGITS, FASHION, DataError, load_dataset, read_idx


def write_idx(path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def make_idx_dir(directory, n_train=20, n_test=10, compress=True, max_label=9):
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(directory / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), compress)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", rng.integers(0, max_label + 1, n), compress)
    return directory


@pytest.mark.parametrize("compress", [True, False])
def test_idx_directory(tmp_path, compress):
    d = load_dataset("idx", make_idx_dir(tmp_path / "set", compress=compress))
    assert d.train.images.shape == (20, 28, 28) and d.train.images.dtype == np.uint8
    assert d.test.labels.dtype == np.int64 and len(d.test) == 10
    assert d.class_names == DIGITS
    assert d.image_shape == (28, 28, 1)


def test_npz_directory(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(
        tmp_path / "set.npz",
        x_train=rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
        y_train=np.arange(12) % 3,
        x_test=rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        y_test=np.arange(4) % 3,
    )
    d = load_dataset("idx", tmp_path)
    assert len(d.train) == 12 and len(d.test) == 4
    assert set(d.train.labels.tolist()) == {0, 1, 2}


def test_fashion_from_data_dir_has_class_names(tmp_path):
    d = load_dataset("fashion-mnist", make_idx_dir(tmp_path / "f"))
    assert d.class_names == FASHION
    assert d.class_names[7] == "Sneaker"


def test_mnist5k_real_and_held_out():
    d = load_dataset("mnist-5k")
    assert len(d.train) == 4500 and len(d.test) == 500
    assert np.bincount(d.test.labels).tolist() == [50] * 10
    assert np.bincount(d.train.labels).tolist() == [450] * 10
    # Shuffled, not sorted by class as in the file.
    assert len(np.unique(d.train.labels[:50])) > 5
    # No test digit is also a training digit.
    train_rows = {row.tobytes() for row in d.train.images}
    assert not any(row.tobytes() in train_rows for row in d.test.images)
    assert d.train.images.max() == 255 and d.train.images.mean() < 60  # ink on a dark background


def test_missing_dir(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("idx", tmp_path / "nope")


def test_empty_dir(tmp_path):
    with pytest.raises(DataError, match="neither MNIST IDX files"):
        load_dataset("idx", tmp_path)


def test_malformed_idx(tmp_path):
    make_idx_dir(tmp_path, compress=False)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(DataError, match="header|truncated"):
        load_dataset("idx", tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"hello world")
    with pytest.raises(DataError, match="magic"):
        read_idx(tmp_path / "train-images-idx3-ubyte")


def test_label_outside_class_range(tmp_path):
    make_idx_dir(tmp_path, max_label=12)
    with pytest.raises(DataError, match="outside"):
        load_dataset("fashion-mnist", tmp_path)


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("cifar")


def test_keras_download_failure_is_one_clear_line(monkeypatch):
    import types

    def no_network():
        raise OSError("URL fetch failure")

    fake = types.SimpleNamespace(mnist=types.SimpleNamespace(load_data=no_network))
    monkeypatch.setattr("keras.datasets", fake, raising=False)
    monkeypatch.setitem(__import__("sys").modules, "keras.datasets", fake)
    with pytest.raises(DataError) as err:
        load_dataset("mnist")
    assert "mnist-5k" in str(err.value) and "\n" not in str(err.value)
