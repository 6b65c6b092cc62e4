"""The output formats: ``{format: (media type, encoder)}``, for images (/generate) and archives (/dataset).

A new format is one entry here plus its encoder: the request schemas accept, and the OpenAPI document
lists, whatever name is registered (:mod:`service.http.schemas`), the routes document its media type, and
the data plane looks its encoder up by name. Nothing else names a format.

* An image encoder gets one request's images and what made them (:class:`Generated`) and returns the
  response body; it runs on the generating thread.
* An archive writer gets the planned data set (:class:`~service.archives.DatasetPlan`) and the PNG
  compression level, and yields the archive in chunks, making the images batch by batch as they are drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import orjson

import cgan_contract as contract
from service import archives, imaging
from service.archives import DatasetPlan
from service.models import LoadedModel


@dataclass(frozen=True)
class Generated:
    """What an image encoder gets: one request's images and what made them."""

    #: uint8 ``[n, H, W, C]``.
    images: np.ndarray
    #: uint64 ``[n]``: the very seeds the images came from (with min_confidence, the ones the judge kept).
    seeds: np.ndarray
    model: LoadedModel
    label: int
    #: float32 ``[n, k]``: the caller's style codes (a traversal's included); None: each image's seed's.
    codes: np.ndarray | None
    #: The PNG grid's images per row (a traversal's steps; None: ``ceil(sqrt(n))``) and its padding.
    nrow: int | None
    pad: int
    compress_level: int


class ImageFormat(NamedTuple):
    media_type: str
    encode: Callable[[Generated], bytes]


class ArchiveFormat(NamedTuple):
    media_type: str
    write: Callable[[DatasetPlan, int], Generator[bytes, None, None]]


def png_grid(made: Generated) -> bytes:
    """One PNG of the images in a grid (:func:`service.imaging.grid`)."""
    return imaging.png(imaging.grid(made.images, made.nrow, made.pad), made.compress_level)


def npy(made: Generated) -> bytes:
    """uint8 ``[n, H, W]`` (``[n, H, W, C]`` for colour models) as .npy bytes."""
    return imaging.npy(imaging.squeeze_channels(made.images))


def json_images(made: Generated) -> bytes:
    """The npy form's pixels as nested lists, with the model, labels, seeds and (for a model with style
    codes) each image's codes: the caller's, else its seed's."""
    model, seeds = made.model, made.seeds
    pixels = imaging.squeeze_channels(made.images)
    n = len(pixels)
    if model.card.codes:
        codes = made.codes
        if codes is None:
            codes = contract.codes_for_seeds(seeds, model.card.latent_dim, model.card.code_ranges)
    return orjson.dumps(
        {
            "model": model.name,
            "version": model.version,
            "labels": [made.label] * n,
            "class_name": model.card.class_names[made.label],
            "seeds": seeds.tolist(),
            "shape": pixels.shape,
            "images": pixels,
            **({} if not model.card.codes else {"codes": codes}),
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


#: /generate's ``format``.
IMAGE_FORMATS: dict[str, ImageFormat] = {
    "png": ImageFormat("image/png", png_grid),
    "npy": ImageFormat("application/x-npy", npy),
    "json": ImageFormat("application/json", json_images),
}

#: /dataset's ``format``.
ARCHIVE_FORMATS: dict[str, ArchiveFormat] = {
    "npz": ArchiveFormat("application/octet-stream", archives.npz_chunks),
    "zip": ArchiveFormat("application/zip", archives.zip_chunks),
    "tar": ArchiveFormat("application/x-tar", archives.tar_chunks),
}
