"""Shape properties of glyph images computed from their pixels (numpy only): what a style code may control.

Images are uint8 ``[N, H, W]`` (or ``[N, H, W, 1]``), 0 = background, 255 = ink (the contract's pixels).
Coordinates are pixels, x to the right and y *down* (row index), as in the image.

* ``slant``: ``-mu11 / mu02`` from the intensity-weighted second-order central moments, i.e. the horizontal
  shift of the ink per pixel of height, the shear a deskewer removes. Positive leans right (top to the
  right), 0 is upright; NaN for an image with no vertical extent.
* ``ink``: ink area, the number of pixels at or above :data:`INK_THRESHOLD`.
* ``width``: stroke width, ink area over the length of the ink's skeleton (Zhang-Suen thinning of the
  ink mask; length = 1 per orthogonal and sqrt 2 per diagonal link between skeleton pixels, plus 1 per
  piece), corrected for the w/2 that thinning eats at each stroke end (:func:`stroke_width`). A stroke
  of width w and length L has area ~ w L and a skeleton ~ L long, whatever its direction (exact for
  axis-aligned strokes, within ~20% for oblique ones, whose 8-connected skeleton runs a little long).
* ``centre_x``, ``centre_y``: intensity-weighted centre of mass.
"""

from __future__ import annotations

import numpy as np

INK_THRESHOLD = 128
PROPERTIES = ("slant", "ink", "width", "centre_x", "centre_y")


def _grey(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 4:
        if images.shape[-1] != 1:
            raise ValueError(f"expected one channel, got {images.shape[-1]}")
        images = images[..., 0]
    if images.ndim != 3:
        raise ValueError(f"expected [N, H, W] images, got shape {list(images.shape)}")
    return images


def ink_mask(images: np.ndarray) -> np.ndarray:
    return _grey(images) >= INK_THRESHOLD


def _moments(images: np.ndarray):
    """(mass, centre x, centre y, mu11, mu02) per image, weighted by intensity."""
    mass_map = _grey(images).astype(np.float64) / 255.0
    h, w = mass_map.shape[1:]
    ys, xs = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)
    mass = mass_map.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (mass_map.sum(axis=1) * xs).sum(axis=1) / mass
        cy = (mass_map.sum(axis=2) * ys).sum(axis=1) / mass
        dx = xs[None, None, :] - cx[:, None, None]
        dy = ys[None, :, None] - cy[:, None, None]
        mu11 = (mass_map * dx * dy).sum(axis=(1, 2)) / mass
        mu02 = (mass_map * dy * dy).sum(axis=(1, 2)) / mass
    return mass, cx, cy, mu11, mu02


def slant(images: np.ndarray) -> np.ndarray:
    _, _, _, mu11, mu02 = _moments(images)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mu02 > 1e-9, -mu11 / np.where(mu02 > 1e-9, mu02, 1.0), np.nan)


def centre_of_mass(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) per image; NaN for a blank image."""
    _, cx, cy, _, _ = _moments(images)
    return cx, cy


def ink_area(images: np.ndarray) -> np.ndarray:
    return ink_mask(images).sum(axis=(1, 2)).astype(np.float64)


def _neighbours(padded: np.ndarray) -> list[np.ndarray]:
    """P2..P9 of Zhang-Suen (N, NE, E, SE, S, SW, W, NW) for the interior of a 1-pixel-padded stack."""
    h, w = padded.shape[1] - 2, padded.shape[2] - 2
    offsets = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]
    return [padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in offsets]


def skeleton(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning (1984) of a bool stack ``[N, H, W]``, all images at once."""
    padded = np.pad(np.asarray(mask, dtype=np.uint8), ((0, 0), (1, 1), (1, 1)))
    active = np.arange(len(padded))  # images still thinning
    for _ in range(padded.shape[1] + padded.shape[2]):
        if len(active) == 0:
            break
        stack = padded[active]
        changed = np.zeros(len(active), dtype=bool)
        for first in (True, False):
            p = _neighbours(stack)
            count = sum(n.astype(np.int16) for n in p)
            after = [*p[1:], p[0]]  # P3..P9, P2: the ring's next neighbour
            transitions = sum(((a == 0) & (b == 1)).astype(np.int16) for a, b in zip(p, after, strict=True))
            n, e, s, w = p[0], p[2], p[4], p[6]
            keep_side = ((n & e & s) | (e & s & w)) if first else ((n & e & w) | (n & s & w))
            centre = stack[:, 1:-1, 1:-1]
            remove = (centre == 1) & (count >= 2) & (count <= 6) & (transitions == 1) & (keep_side == 0)
            centre[remove] = 0
            changed |= remove.any(axis=(1, 2))
        padded[active] = stack
        active = active[changed]
    return padded[:, 1:-1, 1:-1].astype(bool)


def skeleton_length(skel: np.ndarray) -> np.ndarray:
    """Length in pixels of each skeleton: its links (orthogonal 1, diagonal sqrt 2, a diagonal only where no
    orthogonal path of two links joins the same pixels) plus one per connected piece."""
    s = np.pad(np.asarray(skel, dtype=bool), ((0, 0), (1, 1), (1, 1)))
    c = s[:, 1:-1, 1:-1]
    east, south = s[:, 1:-1, 2:], s[:, 2:, 1:-1]
    south_east, south_west = s[:, 2:, 2:], s[:, 2:, :-2]
    west = s[:, 1:-1, :-2]
    orthogonal = (c & east).sum(axis=(1, 2)) + (c & south).sum(axis=(1, 2))
    # A diagonal beside an orthogonal corner would count a corner twice.
    diag_se = c & south_east & ~east & ~south
    diag_sw = c & south_west & ~west & ~south
    diagonal = diag_se.sum(axis=(1, 2)) + diag_sw.sum(axis=(1, 2))
    links = orthogonal + diagonal
    pixels = c.sum(axis=(1, 2))
    # A forest has pixels - links pieces (counting the diagonals kept as links); loops make it smaller.
    pieces = np.maximum(pixels - links, np.minimum(pixels, 1))
    return orthogonal + np.sqrt(2.0) * diagonal + pieces


def skeleton_ends(skel: np.ndarray) -> np.ndarray:
    """Pixels of each skeleton with exactly one 8-neighbour in it: the ends of its strokes."""
    s = np.pad(np.asarray(skel, dtype=np.uint8), ((0, 0), (1, 1), (1, 1)))
    count = sum(n.astype(np.int16) for n in _neighbours(s))
    return ((s[:, 1:-1, 1:-1] == 1) & (count == 1)).sum(axis=(1, 2))


def stroke_width(images: np.ndarray) -> np.ndarray:
    """Width w from area A, skeleton length L and its e ends: thinning eats about w/2 of the stroke at
    each end, so A = w (L + e w / 2); solved for w (w = A / L for closed strokes)."""
    mask = ink_mask(images)
    skel = skeleton(mask)
    length = skeleton_length(skel)
    ends = skeleton_ends(skel).astype(np.float64)
    area = mask.sum(axis=(1, 2)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        closed = area / length
        opened = (np.sqrt(length**2 + 2 * ends * area) - length) / ends
        return np.where(length > 0, np.where(ends > 0, opened, closed), np.nan)


def measure(images: np.ndarray) -> dict[str, np.ndarray]:
    """Every property in :data:`PROPERTIES` per image, float64 ``[N]`` each (NaN where undefined)."""
    cx, cy = centre_of_mass(images)
    return {
        "slant": slant(images),
        "ink": ink_area(images),
        "width": stroke_width(images),
        "centre_x": cx,
        "centre_y": cy,
    }
