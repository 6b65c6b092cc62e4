"""The seed -> noise rule: image ``i`` of a request with seed ``s`` uses the noise of seed ``s + i``.

So ``{seed: s, n: 16}`` image ``k`` equals ``{seed: s + k, n: 1}``, and any image can be regenerated alone.

Style codes follow the same rule: when a request gives no codes, image i's codes are the next ``k`` draws
of seed ``s + i``'s stream after its noise, uniform over each code's range (:func:`codes_for_seeds`). So a
``/dataset`` covers the whole code range reproducibly, and a request that gives codes changes the codes only.

Truncation (the truncation trick) follows it too: with a threshold ``t``, every noise entry ``j`` of seed
``s`` with ``|z_j| > t`` is replaced by the first of its redraws within ``t``, taken from further along
s's own stream (:func:`truncated_noise_for_seeds`). So a truncated image still depends on its seed only,
and its entries already within ``t`` are the untruncated ones.
"""

from __future__ import annotations

import numpy as np

# The seed arithmetic lives in cgan_contract.seeds; these names stay importable from here too.
from cgan_contract.seeds import MAX_SEED, index_seeds, request_seeds  # noqa: F401

#: Truncation thresholds a request may ask for: below 0.5 most entries need many redraws, and every
#: entry already satisfies ``|z| < 5.9`` (see :func:`noise_for_seeds`), so a larger one changes nothing.
MIN_TRUNCATION = 0.5
MAX_TRUNCATION = 5.9
#: Redraws of entry j of a seed's noise: round r uses draw ``latent_dim + TRUNCATION_OFFSET + r *
#: latent_dim + j + 1``, clear of the noise (draws 1..latent_dim) and of the style codes that follow it.
TRUNCATION_OFFSET = 1024
#: Rounds of redraws before an entry still beyond the threshold is clamped to it, so truncation always
#: ends; at the lowest threshold an entry is out after 32 rounds with probability 0.62^32, about 2e-7.
TRUNCATION_ROUNDS = 32

# splitmix64: a counter-based hash makes the noise of seed s independent of the batch around it and
# vectorises over a whole request (a numpy Generator per image costs ~10 us each). Integer arrays wrap on
# overflow silently, which is the arithmetic splitmix64 wants.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_STREAMS: dict[int, np.ndarray] = {}


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place."""
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return z


def noise_for_seeds(seeds: np.ndarray | list[int], latent_dim: int) -> np.ndarray:
    """Standard-normal noise ``[len(seeds), latent_dim]`` float32; row i depends on ``seeds[i]`` only.

    Row i is the splitmix64 stream keyed by splitmix64(seed_i); each 64-bit draw gives two 24-bit
    uniforms (exact in float32) for one Box-Muller normal, so |z| < 5.9 and the maths runs in float32.
    """
    seeds = np.asarray(seeds, dtype=np.uint64).reshape(-1, 1)
    steps = _STREAMS.get(latent_dim)
    if steps is None:
        steps = _STREAMS[latent_dim] = np.arange(1, latent_dim + 1, dtype=np.uint64) * _GOLDEN
    return _normal(_mix(_mix(seeds * _GOLDEN + _GOLDEN) + steps))


def _normal(bits: np.ndarray) -> np.ndarray:
    """One standard normal float32 per 64-bit draw (Box-Muller on two 24-bit uniforms)."""
    radius = ((bits >> np.uint64(40)).astype(np.float32) + np.float32(0.5)) * np.float32(2.0**-24)
    angle = (bits & np.uint64(0xFFFFFF)).astype(np.float32) * np.float32(2.0 * np.pi * 2.0**-24)
    np.log(radius, out=radius)
    radius *= np.float32(-2.0)
    np.sqrt(radius, out=radius)
    np.cos(angle, out=angle)
    radius *= angle
    return radius


def truncated_noise_for_seeds(
    seeds: np.ndarray | list[int], latent_dim: int, threshold: float | None
) -> np.ndarray:
    """:func:`noise_for_seeds` with every entry beyond ``threshold`` redrawn: ``|z| <= threshold``.

    Entry j of seed s with ``|z_j| > threshold`` takes the first of its redraws (round r: draw
    ``latent_dim + TRUNCATION_OFFSET + r * latent_dim + j + 1`` of s's stream) that lies within the
    threshold; after :data:`TRUNCATION_ROUNDS` rounds it is clamped to ``±threshold``. Row i depends on
    ``seeds[i]`` only, and entries within the threshold are left as :func:`noise_for_seeds` drew them.
    ``None`` means no truncation.
    """
    z = noise_for_seeds(seeds, latent_dim)
    if threshold is None:
        return z
    if not MIN_TRUNCATION <= threshold <= MAX_TRUNCATION:
        raise ValueError(f"truncation must be in {MIN_TRUNCATION}..{MAX_TRUNCATION}, got {threshold}")
    limit = np.float32(threshold)
    keys = _mix(np.asarray(seeds, dtype=np.uint64).reshape(-1) * _GOLDEN + _GOLDEN)
    rows, cols = np.nonzero(np.abs(z) > limit)
    for round_ in range(TRUNCATION_ROUNDS):
        if not len(rows):
            break
        draws = cols.astype(np.uint64) + np.uint64(latent_dim + TRUNCATION_OFFSET + round_ * latent_dim + 1)
        redrawn = _normal(_mix(keys[rows] + draws * _GOLDEN))
        z[rows, cols] = redrawn
        still = np.abs(redrawn) > limit
        rows, cols = rows[still], cols[still]
    np.clip(z, -limit, limit, out=z)
    return z


def _stream(seeds: np.ndarray | list[int], first: int, count: int) -> np.ndarray:
    """Draws ``first .. first + count - 1`` (1-based) of each seed's stream, uint64 ``[N, count]``."""
    seeds = np.asarray(seeds, dtype=np.uint64).reshape(-1, 1)
    steps = np.arange(first, first + count, dtype=np.uint64) * _GOLDEN
    return _mix(_mix(seeds * _GOLDEN + _GOLDEN) + steps)


def codes_for_seeds(
    seeds: np.ndarray | list[int], latent_dim: int, ranges: list[tuple[float, float]]
) -> np.ndarray:
    """Style codes ``[len(seeds), len(ranges)]`` float32, uniform in each ``(low, high)``; row i from seed i.

    Code j of seed s is draw ``latent_dim + 1 + j`` of s's stream (draws ``1 .. latent_dim`` are its noise),
    so codes never reuse a noise draw and adding codes to a model leaves its noise rule unchanged.
    """
    if not ranges:
        return np.zeros((len(np.asarray(seeds).reshape(-1)), 0), dtype=np.float32)
    bits = _stream(seeds, latent_dim + 1, len(ranges))
    unit = ((bits >> np.uint64(40)).astype(np.float64) + 0.5) * 2.0**-24
    low = np.array([r[0] for r in ranges], dtype=np.float64)
    high = np.array([r[1] for r in ranges], dtype=np.float64)
    return (low + unit * (high - low)).astype(np.float32)


def noise(seed: int, n: int, latent_dim: int, truncation: float | None = None) -> np.ndarray:
    """Noise for ``n`` images of a request with ``seed``: image i uses seed + i (truncated when asked)."""
    return truncated_noise_for_seeds(request_seeds(seed, n), latent_dim, truncation)
