"""Issue #17 item 9, data side: pixels are checked before any cast, and every unreadable file is one line.

Float pixel policy (documented in ``trainer.data``): floats all in [0, 1] are intensities, scaled by 255 and
rounded; floats that are whole numbers in [0, 255] are taken as they are; anything else is refused.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.trainer.test_data import make_idx_dir
from trainer.data import DataError, load_dataset

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--variant", "cgan", "--arch", "dense", "--batch-size", "8", "--latent-dim", "8", "--no-jit", "--quiet",
]  # fmt: skip


def write_npz(directory: Path, x_train, y_train=None, x_test=None, y_test=None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    n = len(x_train)
    y_train = np.arange(n) % 3 if y_train is None else y_train
    x_test = x_train[:2] if x_test is None else x_test
    y_test = np.arange(len(x_test)) % 3 if y_test is None else y_test
    np.savez(directory / "set.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return directory


# --- defect 1: float pixels ---------------------------------------------------------------------------


def test_float_npz_in_unit_range_is_scaled_not_zeroed(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (6, 28, 28)).astype(np.float32)
    d = load_dataset("idx", write_npz(tmp_path, x))
    assert d.train.images.dtype == np.uint8
    np.testing.assert_array_equal(d.train.images, np.rint(x.astype(np.float64) * 255).astype(np.uint8))
    assert d.train.images.max() > 200  # not the all-zero images the old cast produced


def test_float_npz_of_whole_numbers_in_0_255_is_taken_as_is(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (6, 28, 28)).astype(np.float64)
    d = load_dataset("idx", write_npz(tmp_path, x))
    np.testing.assert_array_equal(d.train.images, x.astype(np.uint8))


@pytest.mark.parametrize(
    "pixels,message",
    [
        (np.linspace(-1, 1, 6 * 28 * 28).reshape(6, 28, 28), "float pixels span -1..1"),
        (np.full((6, 28, 28), 127.5), "float pixels span 127.5..127.5"),
        (np.full((6, 28, 28), np.nan), "NaN"),
        (np.full((6, 28, 28), 300.0), "float pixels span 300..300"),
        (np.arange(6 * 28 * 28).reshape(6, 28, 28), "integer pixels must be in 0..255"),
        (np.full((6, 28, 28), -1, dtype=np.int8), "integer pixels must be in 0..255"),
        (np.ones((6, 28, 28), dtype=bool), "pixels are bool"),
        (np.ones((6, 28, 28, 3), dtype=np.uint8), "images must be [N, H, W]"),
    ],
)
def test_pixels_that_cannot_be_read_faithfully_are_refused(tmp_path, pixels, message):
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        load_dataset("idx", write_npz(tmp_path, pixels))
    assert "\n" not in str(err.value)


def test_integer_pixels_in_range_of_any_width_load(tmp_path):
    x = np.random.default_rng(2).integers(0, 256, (6, 28, 28)).astype(np.int64)
    d = load_dataset("idx", write_npz(tmp_path, x))
    np.testing.assert_array_equal(d.train.images, x.astype(np.uint8))


@pytest.mark.parametrize(
    "labels,message",
    [
        (np.array([0, 1, 2, 0, 1, 2.5]), "whole numbers"),
        (np.array([[0], [1], [2], [0], [1], [2]]), "labels must be 1-D"),
        (np.array(["0", "1", "2", "0", "1", "2"]), "labels are <U1"),
        (np.array([0, 1, 2, 0, 1, 2**40]), "at most 255"),
    ],
)
def test_bad_labels_are_refused(tmp_path, labels, message):
    x = np.zeros((6, 28, 28), np.uint8)
    with pytest.raises(DataError, match=message):
        load_dataset("idx", write_npz(tmp_path, x, y_train=labels))


def test_whole_float_labels_load(tmp_path):
    x = np.zeros((6, 28, 28), np.uint8)
    d = load_dataset("idx", write_npz(tmp_path, x, y_train=np.array([0.0, 1, 2, 0, 1, 2])))
    assert d.train.labels.tolist() == [0, 1, 2, 0, 1, 2] and d.train.labels.dtype == np.int64


def test_empty_training_split_is_one_line(tmp_path):
    make_idx_dir(tmp_path, n_train=0)
    with pytest.raises(DataError, match="training split is empty"):
        load_dataset("idx", tmp_path)


def test_test_split_of_another_image_size_is_refused(tmp_path):
    x = np.zeros((6, 28, 28), np.uint8)
    with pytest.raises(DataError, match="test images are 14x14, train images 28x28"):
        load_dataset("idx", write_npz(tmp_path, x, x_test=np.zeros((2, 14, 14), np.uint8)))


# --- defect 2: unreadable files are one line ----------------------------------------------------------


def truncated_npz(directory: Path) -> Path:
    write_npz(directory, np.zeros((6, 28, 28), np.uint8))
    path = directory / "set.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return directory


def corrupt_gz(directory: Path) -> Path:
    """A gzipped IDX file whose deflate stream is damaged: zlib fails (invalid block type) before any CRC."""
    make_idx_dir(directory)
    path = directory / "train-images-idx3-ubyte.gz"
    raw = bytearray(path.read_bytes())
    raw[10] = 0xFF  # the first deflate block header: BTYPE 11 is reserved
    path.write_bytes(bytes(raw))
    return directory


def truncated_gz(directory: Path) -> Path:
    make_idx_dir(directory)
    path = directory / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])
    return directory


def garbage_npz(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "set.npz").write_bytes(os.urandom(3000))
    return directory


def pickled_npz(directory: Path) -> Path:
    write_npz(directory, np.array([None] * 6, dtype=object).reshape(6, 1, 1))
    return directory


def npz_without_x_test(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "set.npz", x_train=np.zeros((6, 28, 28), np.uint8), y_train=np.zeros(6, int))
    return directory


def huge_npy_header(directory: Path) -> Path:
    """A member whose .npy header claims terabytes: refused from the header, nothing allocated."""
    import zipfile

    directory.mkdir(parents=True, exist_ok=True)
    members = {"x_train": np.zeros((6, 28, 28), np.uint8), "y_train": np.arange(6) % 3}
    members["y_test"] = np.arange(2)
    with zipfile.ZipFile(directory / "set.npz", "w") as z:
        for key, array in members.items():
            buf = io.BytesIO()
            np.save(buf, array)
            z.writestr(f"{key}.npy", buf.getvalue())
        buf = io.BytesIO()
        header = {"descr": "|u1", "fortran_order": False, "shape": (10**7, 10**6)}
        np.lib.format.write_array_header_1_0(buf, header)
        z.writestr("x_test.npy", buf.getvalue() + b"\x00" * 100)
    return directory


BROKEN = {
    "truncated npz": (truncated_npz, "cannot read"),
    "corrupt gz": (corrupt_gz, "cannot read IDX file"),
    "truncated gz": (truncated_gz, "cannot read IDX file"),
    "garbage npz": (garbage_npz, "cannot read"),
    "object npz": (pickled_npz, "object"),
    "npz missing an array": (npz_without_x_test, "x_test"),
    "npy header claims terabytes": (huge_npy_header, "header says"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_unreadable_files_are_one_line_data_errors(tmp_path, case):
    make, message = BROKEN[case]
    with pytest.raises(DataError, match=message) as err:
        load_dataset("idx", make(tmp_path / "d"))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("case", ["truncated npz", "corrupt gz", "object npz"])
def test_cli_reports_unreadable_data_in_one_line(tmp_path, case, capsys):
    from trainer.cli import main

    make, message = BROKEN[case]
    data_dir = make(tmp_path / "d")
    code = main(
        ["train", *TINY, "--steps", "2", "--dataset", "idx", "--data-dir", str(data_dir)]
        + ["--work-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "models")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("cgan-train train: error:") and message in err[-1]


def test_cli_process_exits_2_without_a_traceback_on_a_float_npz_it_cannot_read(tmp_path):
    write_npz(tmp_path / "d", np.full((6, 28, 28), -0.5, np.float32))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "train", *TINY, "--epochs", "1", "--dataset", "idx"]
        + ["--data-dir", str(tmp_path / "d"), "--no-export"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]  # (TensorFlow's start-up chatter may come before it)
    assert line.startswith("cgan-train train: error:") and "float pixels span -0.5..-0.5" in line
    assert not (tmp_path / "runs").exists()
