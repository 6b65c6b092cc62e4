"""What a caller asks the data plane for, whichever protocol carried it: the domain requests.

Each protocol's schema builds one with its own ``to_request()`` (:mod:`service.http.schemas` for /generate
and /dataset, :mod:`service.http.oip_codec` for the Open Inference Protocol); :mod:`service.dataplane` checks
it against the limits and the model and resolves it into a job (labels, seeds or z, codes, controls). The
fields are what the caller said (a label by name or index, a seed or none); nothing here is resolved yet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

import cgan_contract as contract
from service.style_codes import Traversal

if TYPE_CHECKING:
    from service.models import LoadedModel


@dataclass(frozen=True)
class ImageRequest:
    """``n`` images of one label, encoded in ``format`` (one of :data:`service.formats.IMAGE_FORMATS`)."""

    label: int | str
    n: int = 16
    seed: int | None = None
    model: str | None = None
    format: str = "png"
    nrow: int | None = None
    pad: int = 2
    version: int | None = None
    #: Style codes (see :mod:`service.style_codes`): k values for all images, or one list of k per image.
    codes: Sequence[float] | Sequence[Sequence[float]] | None = None
    #: A traversal grid instead of ``n`` images: ``n`` rows (seeds) of ``traverse.steps`` columns.
    traverse: Traversal | None = None
    #: Redraw noise entries beyond this (the contract's truncation rule); None: plain noise.
    truncation: float | None = None
    #: Keep only images the judge gives the label at least this probability (service.filtering).
    min_confidence: float | None = None


@dataclass(frozen=True)
class TensorRequest:
    """One image per entry of ``labels`` (class indices), from the caller's noise ``z`` or from ``seed``.

    ``encode(model, seed, images)`` turns the ``[n, H, W, C]`` images into response bytes on the generating
    thread (``seed`` is None when ``z`` was given). The fields are named after the tensors they carry, so a
    refusal names the protocol's input: ``label``, ``z``, or the ``seed`` parameter.
    """

    labels: np.ndarray
    encode: Callable[[LoadedModel, int | None, np.ndarray], bytes]
    z: np.ndarray | None = None
    seed: int | None = None
    model: str | None = None
    version: int | None = None
    media_type: str = "application/octet-stream"
    #: float32 ``[N, k]`` style codes, for a model with a ``codes`` input; the seed rule's when absent
    #: (then required with ``z``, which comes without a seed).
    codes: np.ndarray | None = None


@dataclass(frozen=True)
class ArchiveRequest:
    """``per_label`` images of each label (every class by default), as one archive in ``format`` (one of
    :data:`service.formats.ARCHIVE_FORMATS`)."""

    per_label: int
    labels: Sequence[int | str] | None = None
    seed: int | None = None
    model: str | None = None
    format: str = "npz"
    version: int | None = None
    #: Style codes: k values for every image; each image's from its seed when absent.
    codes: Sequence[float] | None = None
    truncation: float | None = None
    min_confidence: float | None = None
    #: The order the images are handed out in (:mod:`cgan_contract.order`); the set is the same in each.
    order: contract.Order = contract.DEFAULT_ORDER
    #: Only positions ``[start, stop)`` of that order (all ``N`` by default): a contiguous, balanced run.
    start: int | None = None
    stop: int | None = None
