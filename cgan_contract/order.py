"""The emission order of a data set: which of its images is handed out at which position.

A data set of ``L`` labels with ``per_label`` images each is a fixed set of ``N = L * per_label`` images:
image ``j`` (its *index*, ``0 <= j < N``) has label ``labels[j // per_label]`` and seed ``seed + j``
(:func:`~cgan_contract.noise.request_seeds`). The order says only in which sequence those images are
handed out (rows of an npz, members of a tar, shards of ``cgan-bulk``); it never changes which images the
set holds, so every image keeps its seed and can still be made again alone.

* ``"by_class"``: position ``p`` holds image ``p``: each label's images together, labels in the order given.
  Training on it as it comes (``fit(..., shuffle=False)``, a streamed ``tf.data`` pipeline) sees one class at
  a time and learns little.
* ``"shuffled"`` (the default): a stratified shuffle keyed by the seed. Position ``p`` is slot ``p % L`` of
  round ``p // L``; slot ``s`` always holds label block ``cycle[s]`` (``cycle``: a seeded permutation of the
  ``L`` blocks), and round ``r`` takes that block's image ``perm_b(r)`` (``perm_b``: a seeded bijection over
  ``0 .. per_label - 1``, a different one per block). So any ``w`` consecutive positions hold every label
  ``floor(w / L)`` or ``ceil(w / L)`` times: a batch, a window of a stream, a contiguous shard are all
  class-balanced, and within a label the seeds come in a scrambled order.

Both are computed per position in O(1) memory (the bijection is a Feistel network over the next power of
four, cycle-walked into range), so a stream of any length needs no table of N entries.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from cgan_contract.noise import _GOLDEN, _mix

Order = Literal["shuffled", "by_class"]
ORDERS: tuple[Order, ...] = ("shuffled", "by_class")
DEFAULT_ORDER: Order = "shuffled"

_ROUNDS = 4
# Keys of the cycle and of each block's bijection come from distinct draws of the seed's stream, clear of
# the draws the noise and style codes use (1 .. latent_dim + k), so the order is independent of the images.
_CYCLE_DRAW = 1 << 40
_BLOCK_DRAW = 1 << 41


def _keyed(seed: int, draws: np.ndarray) -> np.ndarray:
    """splitmix64 draws ``draws`` (uint64) of ``seed``'s stream."""
    key = _mix(np.array([seed], dtype=np.uint64) * _GOLDEN + _GOLDEN)
    return _mix(key + draws * _GOLDEN)


def cycle(seed: int, num_labels: int) -> np.ndarray:
    """The label blocks in the order the slots of every round hold them (int64 ``[L]``)."""
    ranks = _keyed(seed, np.arange(num_labels, dtype=np.uint64) + np.uint64(_CYCLE_DRAW))
    return np.argsort(ranks, kind="stable").astype(np.int64)


def _permute(values: np.ndarray, size: int, keys: np.ndarray) -> np.ndarray:
    """A bijection over ``0 .. size - 1`` (one per key row), applied to ``values`` (uint64 ``[n]``)."""
    bits = max(2, int(size - 1).bit_length())
    half = (bits + 1) // 2
    mask = np.uint64((1 << half) - 1)
    shift = np.uint64(half)

    def feistel(x: np.ndarray, k: np.ndarray) -> np.ndarray:
        left, right = x >> shift, x & mask
        for r in range(_ROUNDS):
            left, right = right, left ^ (_mix(right * _GOLDEN + k[:, r]) & mask)
        return (left << shift) | right

    out = feistel(values, keys)
    outside = np.nonzero(out >= np.uint64(size))[0]
    while len(outside):  # cycle walking: the walk from a value in range ends at one, so it stays a bijection
        out[outside] = feistel(out[outside], keys[outside])
        outside = outside[out[outside] >= np.uint64(size)]
    return out


def image_indices(
    positions: np.ndarray, num_labels: int, per_label: int, seed: int, order: Order = DEFAULT_ORDER
) -> np.ndarray:
    """The index ``j`` (int64) of the image handed out at each of ``positions`` (int, ``0 <= p < N``)."""
    positions = np.asarray(positions, dtype=np.int64).reshape(-1)
    if order == "by_class":
        return positions.copy()
    if order != "shuffled":
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    blocks = cycle(seed, num_labels)[positions % num_labels]
    rounds = (positions // num_labels).astype(np.uint64)
    draws = blocks.astype(np.uint64)[:, None] * np.uint64(_ROUNDS) + np.arange(_ROUNDS, dtype=np.uint64)
    keys = _keyed(seed, (draws + np.uint64(_BLOCK_DRAW)).reshape(-1)).reshape(-1, _ROUNDS)
    within = _permute(rounds, per_label, keys).astype(np.int64)
    return blocks * per_label + within


def check_order(order: str) -> Order:
    """``order`` if it is one of :data:`ORDERS`, else ``ValueError`` naming the choices."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    return order  # type: ignore[return-value]
