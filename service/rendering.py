"""The blocking half of ``/generate``: model output to response bytes, run on a worker thread."""

from __future__ import annotations

import numpy as np
import orjson

from service import contract, imaging
from service.models import LoadedModel

MEDIA_TYPES = {"png": "image/png", "npy": "application/x-npy", "json": "application/json"}


def encode(
    model: LoadedModel,
    label: int,
    seed: int,
    fmt: str,
    nrow: int | None,
    pad: int,
    compress_level: int,
    images: np.ndarray,
) -> bytes:
    """``[n, H, W, C]`` images of one request as a PNG grid, .npy bytes or JSON."""
    if fmt == "png":
        return imaging.png(imaging.grid(images, nrow, pad), compress_level)
    pixels = imaging.squeeze_channels(images)
    if fmt == "npy":
        return imaging.npy(pixels)
    n = len(pixels)
    return orjson.dumps(
        {
            "model": model.name,
            "version": model.version,
            "labels": [label] * n,
            "class_name": model.card.class_names[label],
            "seeds": list(range(seed, seed + n)),
            "shape": pixels.shape,
            "images": pixels,
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def render(
    model: LoadedModel,
    label: int,
    n: int,
    seed: int,
    fmt: str,
    nrow: int | None,
    pad: int,
    compress_level: int,
) -> bytes:
    """One request end to end, unbatched: what the service does for it, minus HTTP."""
    images = model.generate(np.full(n, label, dtype=np.int64), contract.request_seeds(seed, n))
    return encode(model, label, seed, fmt, nrow, pad, compress_level, images)
