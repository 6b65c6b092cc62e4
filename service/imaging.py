"""Pure encoders: image grids, PNG and .npy bytes. No I/O, no model, safe to call from any thread.

Grid size for ``n`` images of ``H x W`` with ``nrow`` images per row and ``pad`` pixels of padding::

    cols   = min(nrow, n)            (nrow defaults to ceil(sqrt(n)))
    rows   = ceil(n / cols)
    width  = cols * W + (cols + 1) * pad
    height = rows * H + (rows + 1) * pad

Padding surrounds every cell, the outer border included; cells are filled row by row and the unused cells
of the last row stay background. n=16 of 28x28 with pad 2 gives a 122x122 grid.
"""

from __future__ import annotations

import io
import math
import struct
import zlib

import numpy as np

from cgan_contract import BACKGROUND

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types by channel count: grey, grey+alpha, RGB, RGBA.
_PNG_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}


def default_nrow(n: int) -> int:
    return math.isqrt(n - 1) + 1 if n > 0 else 1


def grid_layout(n: int, nrow: int | None = None) -> tuple[int, int]:
    """``(rows, cols)`` of the grid for ``n`` images."""
    cols = max(1, min(nrow or default_nrow(n), n))
    return -(-n // cols), cols


def grid_size(n: int, image_hw: tuple[int, int], nrow: int | None = None, pad: int = 2) -> tuple[int, int]:
    """``(width, height)`` in pixels of the grid :func:`grid` builds."""
    rows, cols = grid_layout(n, nrow)
    h, w = image_hw
    return cols * w + (cols + 1) * pad, rows * h + (rows + 1) * pad


def grid(images: np.ndarray, nrow: int | None = None, pad: int = 2, fill: int = BACKGROUND) -> np.ndarray:
    """Tile ``[n, H, W, C]`` uint8 images into one ``[height, width, C]`` image, row by row."""
    n, h, w, c = images.shape
    rows, cols = grid_layout(n, nrow)
    # Each cell carries its own top/left padding; one extra strip closes the bottom and right edges.
    cells = np.full((rows * cols, h + pad, w + pad, c), fill, dtype=np.uint8)
    cells[:n, pad:, pad:] = images
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), fill, dtype=np.uint8)
    out[: rows * (h + pad), : cols * (w + pad)] = (
        cells.reshape(rows, cols, h + pad, w + pad, c)
        .transpose(0, 2, 1, 3, 4)
        .reshape(rows * (h + pad), -1, c)
    )
    return out


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def png(image: np.ndarray, compress_level: int = 1) -> bytes:
    """Encode ``[H, W]`` or ``[H, W, C]`` uint8 as an 8-bit PNG.

    Written directly with zlib: about 4x faster than Pillow for the small images served here. Filter
    type 0 with zlib's run-length strategy (what libpng's fast settings use) costs about a third less
    CPU than the default strategy and compresses noisy early-training samples better; digits, mostly
    background runs, shrink almost as well.
    """
    if image.ndim == 2:
        image = image[:, :, None]
    h, w, c = image.shape
    scanlines = np.zeros((h, 1 + w * c), dtype=np.uint8)  # column 0 is each scanline's filter byte
    scanlines[:, 1:] = image.reshape(h, w * c)
    header = struct.pack(">IIBBBBB", w, h, 8, _PNG_COLOR_TYPE[c], 0, 0, 0)
    return b"".join(
        (
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", _deflate(scanlines.data, compress_level)),
            _png_chunk(b"IEND", b""),
        )
    )


def _deflate(data: memoryview, level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    return compressor.compress(data) + compressor.flush()


def npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The header of a C-order ``.npy`` file, so that data can follow in chunks."""
    buffer = io.BytesIO()
    fields = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, fields)
    return buffer.getvalue()


def npy(array: np.ndarray) -> bytes:
    array = np.asarray(array)
    if not array.flags.c_contiguous:  # ascontiguousarray alone would turn a 0-d array into [1]
        array = np.ascontiguousarray(array)
    return b"".join((npy_header(array.dtype, array.shape), array.data))


def squeeze_channels(images: np.ndarray) -> np.ndarray:
    """``[n, H, W, 1]`` -> ``[n, H, W]``: the layout clients expect for single-channel images."""
    return images[..., 0] if images.shape[-1] == 1 else images
