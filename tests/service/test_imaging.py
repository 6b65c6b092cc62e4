"""The pure encoders: grid layout and size formula, PNG and .npy bytes."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from service import imaging


def _images(n: int, h: int = 5, w: int = 4, c: int = 1) -> np.ndarray:
    # Every image a distinct constant, so each cell of a grid says which image landed there.
    return np.broadcast_to(np.arange(1, n + 1, dtype=np.uint8)[:, None, None, None], (n, h, w, c)).copy()


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 70), nrow=st.none() | st.integers(1, 80), pad=st.integers(0, 4))
def test_grid_places_images_row_by_row(n: int, nrow: int | None, pad: int) -> None:
    h, w = 5, 4
    grid = imaging.grid(_images(n, h, w), nrow, pad)
    cols = min(nrow or math.ceil(math.sqrt(n)), n)
    rows = math.ceil(n / cols)
    assert (grid.shape[1], grid.shape[0]) == imaging.grid_size(n, (h, w), nrow, pad)
    assert grid.shape[:2] == (rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad)
    for i in range(rows * cols):
        top, left = pad + (i // cols) * (h + pad), pad + (i % cols) * (w + pad)
        cell = grid[top : top + h, left : left + w, 0]
        assert (cell == (i + 1 if i < n else 0)).all(), f"cell {i}"
    # Padding is background and there is exactly as much as the formula says.
    assert int((grid == 0).sum()) == grid.size - n * h * w


def test_grid_size_for_sixteen_digits() -> None:
    assert imaging.grid_size(16, (28, 28)) == (122, 122)
    assert imaging.grid_size(16, (28, 28), nrow=8, pad=0) == (224, 56)
    assert imaging.grid_size(5, (28, 28), nrow=10, pad=1) == (5 * 28 + 6, 28 + 2)


@pytest.mark.parametrize("channels,mode", [(1, "L"), (3, "RGB"), (4, "RGBA")])
def test_png_decodes_to_the_same_pixels(channels: int, mode: str) -> None:
    pixels = np.random.default_rng(channels).integers(0, 256, (17, 23, channels), dtype=np.uint8)
    decoded = Image.open(io.BytesIO(imaging.png(pixels)))
    assert decoded.mode == mode and decoded.size == (23, 17)
    assert np.array_equal(np.asarray(decoded).reshape(17, 23, channels), pixels)


@pytest.mark.parametrize("level", [0, 1, 9])
def test_png_any_level_round_trips(level: int) -> None:
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[5:20, 10:14] = 255
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(imaging.png(pixels, level)))), pixels)


@pytest.mark.parametrize("dtype,shape", [(np.uint8, (3, 28, 28)), (np.int64, (7,)), (np.uint8, (2, 4, 4, 3))])
def test_npy_round_trips(dtype: type, shape: tuple[int, ...]) -> None:
    array = np.arange(int(np.prod(shape))).astype(dtype).reshape(shape)
    assert np.array_equal(np.load(io.BytesIO(imaging.npy(array))), array)
    header = imaging.npy_header(np.dtype(dtype), shape)
    assert len(header) % 64 == 0 and imaging.npy(array).startswith(header)
