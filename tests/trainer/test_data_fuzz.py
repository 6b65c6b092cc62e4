"""Issue #17: the data loaders fuzzed over IDX / gz / npz bytes and arrays.

Every input either loads correctly (uint8 ``[N, H, W]`` pixels that match the source, int64 labels in range)
or raises ``DataError`` with a one-line message: never another exception, never silently wrong pixels.
Bounded example counts keep each property to a few seconds on 2 CPU cores.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from trainer.data import FASHION, DataError, load_dataset, read_idx

#: 150 examples per property in CI; ``CGAN_FUZZ_EXAMPLES=5000`` for a longer hunt.
FUZZ = settings(
    max_examples=int(os.environ.get("CGAN_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


# --- reference decoders (the spec the loader is held to) ------------------------------------------------


def idx_reference(data: bytes) -> np.ndarray | None:
    """What an IDX file's bytes encode, or None when they are not a complete unsigned-byte IDX file."""
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or data[3] == 0:
        return None
    header = 4 + 4 * data[3]
    if len(data) < header:
        return None
    dims = struct.unpack(f">{data[3]}I", data[4:header])
    if len(data) - header != int(np.prod(dims, dtype=object)):
        return None
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def expected_pixels(images: np.ndarray) -> np.ndarray | None:
    """The documented pixel policy: uint8 as is; integers in 0..255; floats in [0, 1] scaled by 255 and
    rounded; floats that are whole numbers in [0, 255] as they are; anything else refused (None)."""
    if images.ndim != 3 or 0 in images.shape[1:]:
        return None
    kind = images.dtype.kind
    if images.size == 0 and kind in "uif":
        return np.zeros(images.shape, np.uint8)
    if kind in "ui":
        ok = int(images.min()) >= 0 and int(images.max()) <= 255
        return images.astype(np.uint8) if ok else None
    if kind == "f":
        x = images.astype(np.float64)
        if not np.isfinite(x).all() or x.min() < 0:
            return None
        if x.max() <= 1:
            return np.rint(x * 255).astype(np.uint8)
        if x.max() <= 255 and (x == np.rint(x)).all():
            return x.astype(np.uint8)
    return None


def expected_labels(labels: np.ndarray, n: int) -> np.ndarray | None:
    if labels.ndim != 1 or len(labels) != n:
        return None
    if labels.dtype.kind in "ui":
        return labels.astype(np.int64) if labels.size == 0 or int(labels.min()) >= 0 else None
    if labels.dtype.kind == "f":
        x = labels.astype(np.float64)
        if not np.isfinite(x).all() or (x != np.rint(x)).any() or (x < 0).any() or (x > 2**40).any():
            return None
        return x.astype(np.int64)
    return None


def check_loaded_or_refused(load, expected_splits, may_refuse: bool = False):
    """``expected_splits``: {"train": (pixels, labels), "test": ...}, or None when it must be refused.
    ``may_refuse``: refusing is also right (a damaged file whose exact meaning the test does not decode)."""
    try:
        dataset = load()
    except DataError as exc:
        assert "\n" not in str(exc) and str(exc)
        assert may_refuse or expected_splits is None, f"refused a loadable input: {exc}"
        return None
    assert expected_splits is not None, "loaded an input that should have been refused"
    for split_name in ("train", "test"):
        split = getattr(dataset, split_name)
        pixels, labels = expected_splits[split_name]
        assert split.images.dtype == np.uint8 and split.images.ndim == 3
        assert split.labels.dtype == np.int64 and split.labels.ndim == 1
        np.testing.assert_array_equal(split.images, pixels)
        np.testing.assert_array_equal(split.labels, labels)
        assert len(split) == 0 or 0 <= split.labels.min() <= split.labels.max() < dataset.num_classes
    assert len(dataset.train) > 0
    return dataset


def splits_from(arrays: dict, num_classes: int | None) -> dict | None:
    """The outcome the spec demands for these four arrays (None: refuse)."""
    out = {}
    for split_name, (x_key, y_key) in {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}.items():
        pixels = expected_pixels(arrays[x_key])
        if pixels is None:
            return None
        labels = expected_labels(arrays[y_key], len(pixels))
        if labels is None:
            return None
        out[split_name] = (pixels, labels)
    if len(out["train"][0]) == 0 or out["train"][0].shape[1:] != out["test"][0].shape[1:]:
        return None
    highest = max(int(labels.max(initial=0)) for _, labels in out.values())
    limit = num_classes if num_classes is not None else 256
    return out if highest < limit else None


# --- mutations ----------------------------------------------------------------------------------------


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """Truncate, flip, overwrite, insert or append bytes of a valid file (a few edits at once)."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["truncate", "flip", "set", "insert", "append", "zero-run"]))
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        if op == "truncate":
            del out[at:]
        elif op == "flip" and out:
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and out:
            out[at] = draw(st.integers(0, 255))
        elif op == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "append":
            out += draw(st.binary(min_size=1, max_size=64))
        elif op == "zero-run":
            out[at : at + draw(st.integers(1, 64))] = b""
    return bytes(out)


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def small_idx_set(seed: int = 0, side: int = 5) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (4, side, side))),
        "train-labels-idx1-ubyte": idx_bytes(rng.integers(0, 10, 4)),
        "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (2, side, side))),
        "t10k-labels-idx1-ubyte": idx_bytes(rng.integers(0, 10, 2)),
    }


# --- IDX and gz ---------------------------------------------------------------------------------------

idx_headers = st.builds(
    lambda ndim, dims, tail: bytes([0, 0, 8, ndim]) + struct.pack(f">{len(dims)}I", *dims) + tail,
    st.integers(0, 255),
    st.lists(st.one_of(st.integers(0, 6), st.integers(0, 2**32 - 1)), max_size=4),
    st.binary(max_size=200),
)


@FUZZ
@given(raw=st.one_of(st.binary(max_size=400), idx_headers), compress=st.booleans(), as_gz=st.booleans())
def test_read_idx_on_any_bytes_returns_what_they_encode_or_a_data_error(raw, compress, as_gz):
    payload = gzip.compress(raw, mtime=0) if compress else raw
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("f.gz" if as_gz else "f")
        path.write_bytes(payload)
        try:
            got = read_idx(path)
        except DataError as exc:
            assert "\n" not in str(exc)
            # Refused: fine unless it was a complete IDX file read the right way.
            assert not (compress == as_gz and idx_reference(raw) is not None), exc
            return
    want = idx_reference(gunzip(payload) if as_gz else payload)
    assert want is not None
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.uint8 and got.shape == want.shape


@FUZZ
@given(data=st.data(), stem=st.sampled_from(IDX_STEMS), compress=st.booleans(), named=st.booleans())
def test_mutated_idx_directories_load_what_the_files_hold_or_refuse(data, stem, compress, named):
    files = small_idx_set()
    target = files[stem]
    if compress:
        target = gzip.compress(target, mtime=0)
    broken = data.draw(mutated(target))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for name, content in files.items():
            if name == stem:
                (d / (name + ".gz" if compress else name)).write_bytes(broken)
            else:
                (d / name).write_bytes(content)
        decoded = {name: idx_reference(content) for name, content in files.items()}
        try:
            decoded[stem] = idx_reference(gunzip(broken) if compress else broken)
        except (OSError, EOFError, zlib.error):
            decoded[stem] = None
        if any(v is None for v in decoded.values()):
            expected = None
        else:
            arrays = {
                "x_train": decoded["train-images-idx3-ubyte"],
                "y_train": decoded["train-labels-idx1-ubyte"],
                "x_test": decoded["t10k-images-idx3-ubyte"],
                "y_test": decoded["t10k-labels-idx1-ubyte"],
            }
            expected = splits_from(arrays, len(FASHION) if named else None)
        if named:
            check_loaded_or_refused(lambda: load_dataset("fashion-mnist", d), expected)
        else:
            check_loaded_or_refused(lambda: load_dataset("idx", d), expected)


def gunzip(data: bytes) -> bytes:
    """gzip as the standard library's reader defines it (zero padding after a member is allowed)."""
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
        return f.read()


# --- npz ----------------------------------------------------------------------------------------------

PIXEL_DTYPES = st.sampled_from(
    [np.uint8, np.int8, np.int16, np.uint16, np.int64, np.float16, np.float32, np.float64, np.bool_, ">f8"]
)


@st.composite
def pixel_arrays(draw, n: int | None = None, side: int | None = None):
    """Mostly [N, H, W] in one of the styles a real dataset comes in, sometimes any shape or values."""
    if draw(st.integers(0, 9)) == 0:
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
    else:
        n = draw(st.integers(0, 5)) if n is None else n
        side = draw(st.integers(1, 4)) if side is None else side
        shape = (n, side, side)
    style = draw(st.sampled_from(["uint8", "int", "unit", "whole", "any"]))
    if style == "uint8":
        return draw(hnp.arrays(np.uint8, shape))
    if style == "int":
        dtype = np.dtype(draw(st.sampled_from([np.int16, np.int64, np.uint16])))
        return draw(hnp.arrays(dtype, shape, elements=st.integers(0 if dtype.kind == "u" else -2, 300)))
    if style == "unit":
        dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
        return draw(hnp.arrays(dtype, shape, elements=st.floats(0, 1, width=16)))
    if style == "whole":
        return draw(hnp.arrays(np.float32, shape, elements=st.integers(0, 256).map(float)))
    return draw(hnp.arrays(draw(PIXEL_DTYPES), shape))


@st.composite
def label_arrays(draw, n: int):
    if draw(st.integers(0, 9)) == 0:
        dtype = draw(st.sampled_from([np.int64, np.float64, np.uint8, np.bool_, "<U2"]))
        return draw(hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=6)))
    if draw(st.booleans()):
        return draw(hnp.arrays(np.int64, n, elements=st.integers(-1, 12)))
    return draw(hnp.arrays(np.float64, n, elements=st.sampled_from([0.0, 1.0, 9.0, 2.5, -1.0, 300.0])))


@st.composite
def npz_arrays(draw):
    x_train = draw(pixel_arrays())
    n = len(x_train) if x_train.ndim else 1
    side = x_train.shape[1] if x_train.ndim == 3 and x_train.shape[1] else 3
    x_test = draw(pixel_arrays(side=side if draw(st.integers(0, 9)) else None))
    return {
        "x_train": x_train,
        "y_train": draw(label_arrays(n)),
        "x_test": x_test,
        "y_test": draw(label_arrays(len(x_test) if x_test.ndim else 1)),
    }


def npz_bytes(arrays: dict, compressed: bool) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


@FUZZ
@given(arrays=npz_arrays(), named=st.booleans(), compressed=st.booleans())
def test_npz_arrays_load_by_the_pixel_policy_or_are_refused(arrays, named, compressed):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "set.npz").write_bytes(npz_bytes(arrays, compressed))
        expected = splits_from(arrays, len(FASHION) if named else None)
        name = "fashion-mnist" if named else "idx"
        check_loaded_or_refused(lambda: load_dataset(name, tmp), expected)


VALID_NPZ = {
    "x_train": np.random.default_rng(3).uniform(0, 1, (4, 5, 5)).astype(np.float32),
    "y_train": np.array([0, 1, 2, 3]),
    "x_test": np.random.default_rng(4).integers(0, 256, (2, 5, 5), dtype=np.uint8),
    "y_test": np.array([4, 5], dtype=np.uint8),
}


@FUZZ
@given(data=st.data(), compressed=st.booleans())
def test_mutated_npz_files_load_the_original_arrays_or_refuse(data, compressed):
    broken = data.draw(mutated(npz_bytes(VALID_NPZ, compressed)))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "set.npz").write_bytes(broken)
        # The zip CRC guards the members: a file that still reads must hold the original arrays.
        expected = splits_from(VALID_NPZ, None)
        check_loaded_or_refused(lambda: load_dataset("idx", tmp), expected, may_refuse=True)


@FUZZ
@given(raw=st.binary(max_size=600), zip_wrapped=st.booleans())
def test_random_bytes_as_npz_are_refused_in_one_line(raw, zip_wrapped):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "set.npz"
        if zip_wrapped:  # a real zip whose members are not .npy files
            with zipfile.ZipFile(path, "w") as z:
                for key in VALID_NPZ:
                    z.writestr(f"{key}.npy", raw)
        else:
            path.write_bytes(raw)
        with pytest.raises(DataError) as err:
            load_dataset("idx", tmp)
        assert "\n" not in str(err.value)
