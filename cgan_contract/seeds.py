"""The seed arithmetic, written once: which seed each image of a request or data set uses.

* Image ``i`` of a request (``/generate``, the Open Inference Protocol's ``seed`` parameter) with seed ``s``
  uses seed ``s + i`` (:func:`request_seeds`); image ``j`` of a data set uses ``s + j`` (:func:`index_seeds`).
  So ``{seed: s, n: 16}`` image ``k`` equals ``{seed: s + k, n: 1}``, and any image can be made again alone.
* Seeds are JSON- and JavaScript-safe integers, ``0 .. MAX_SEED``; a request of ``count`` images with seed
  ``s`` needs ``s + count - 1 <= MAX_SEED`` (:func:`check_seed`, :func:`last_first_seed`).
* A judge-filtered request (``min_confidence``) draws candidates in a fixed order, at most
  :data:`MAX_DRAWS_PER_IMAGE` per image kept: a request's own seeds, then the ones after them
  (:func:`request_candidates`); a data set's label block its own seeds first, then seeds after the whole set
  taken by the blocks in turn (:func:`block_candidates`), so no two blocks share a seed.

The noise each seed gives is :mod:`cgan_contract.noise`'s; the order a data set is handed out in is
:mod:`cgan_contract.order`'s. Nobody else spells ``seed + i``.
"""

from __future__ import annotations

import numpy as np

#: Seeds are JSON- and JavaScript-safe integers.
MAX_SEED = 2**53 - 1
#: Candidates judged per image kept at most: a filtered request of ``n`` images costs at most 20 n.
MAX_DRAWS_PER_IMAGE = 20


def last_first_seed(count: int) -> int:
    """The largest seed a request of ``count`` images may start from (its last image uses MAX_SEED)."""
    return MAX_SEED - count + 1


def check_seed(seed: int, count: int = 1) -> None:
    """``ValueError`` unless ``seed .. seed + count - 1`` are all seeds (``0 .. MAX_SEED``)."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in 0..{MAX_SEED}, got {seed}")
    if seed > last_first_seed(count):
        raise ValueError(f"seed + {count} images - 1 exceeds MAX_SEED ({MAX_SEED})")


def request_seeds(seed: int, n: int) -> np.ndarray:
    """uint64 ``[n]``: the seeds of a request's images, image i using ``seed + i``."""
    check_seed(seed, max(n, 1))
    return np.arange(seed, seed + n, dtype=np.uint64)


def index_seeds(seed: int, indices: np.ndarray) -> np.ndarray:
    """uint64 seeds of images ``indices`` of a request or data set with ``seed``: image j uses seed + j."""
    return np.asarray(indices, dtype=np.uint64) + np.uint64(seed)


def request_candidates(seed: int, n: int) -> np.ndarray:
    """The candidate seeds of a filtered request of ``n`` images: seed, seed + 1, ... (20 n of them)."""
    return request_seeds(seed, MAX_DRAWS_PER_IMAGE * n)


def block_candidates(seed: int, per_label: int, labels: int, block: int) -> np.ndarray:
    """The candidate seeds of label block ``block`` of a filtered data set of ``labels`` blocks of
    ``per_label``: the block's own seeds (``seed + block * per_label + i``, as unfiltered) first, then
    ``seed + labels * per_label + m * labels + block`` for m = 0, 1, ... With one label this is
    :func:`request_candidates`."""
    total = labels * per_label
    own = np.arange(per_label, dtype=np.uint64) + np.uint64(seed + block * per_label)
    extra = np.arange((MAX_DRAWS_PER_IMAGE - 1) * per_label, dtype=np.uint64) * np.uint64(labels)
    return np.concatenate([own, extra + np.uint64(seed + total + block)])
