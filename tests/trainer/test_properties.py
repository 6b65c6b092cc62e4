"""Pixel properties of glyphs (slant, ink, stroke width, centre of mass) on images whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.evaluation import properties as P


def stroke(width: float, start, end, size: int = 28) -> np.ndarray:
    """A straight stroke with round ends: pixels within width/2 of the segment start-end ((x, y) each)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    p0, d = np.array(start, float), np.subtract(end, start).astype(float)
    t = np.clip(((xx - p0[0]) * d[0] + (yy - p0[1]) * d[1]) / (d @ d), 0, 1)
    distance = np.hypot(xx - p0[0] - t * d[0], yy - p0[1] - t * d[1])
    return np.where(distance <= width / 2, 255, 0).astype(np.uint8)


def test_axis_aligned_strokes_give_their_exact_width():
    # Within 1.5 of the centre line on the pixel grid: exactly 3 pixels across; within 2.5: 5.
    for width, pixels in ((3.0, 3), (5.0, 5)):
        images = np.stack([stroke(width, (14, 4), (14, 24)), stroke(width, (4, 14), (24, 14))])
        assert P.stroke_width(images) == pytest.approx([pixels, pixels], abs=0.15)
        assert P.stroke_width(images[..., None]) == pytest.approx([pixels, pixels], abs=0.15)


def test_width_ignores_direction_and_length_and_grows_with_the_stroke():
    for width in (3.0, 5.0):
        images = np.stack(
            [
                stroke(width, (6, 6), (22, 22)),
                stroke(width, (10, 4), (18, 24)),
                stroke(width, (14, 8), (14, 20)),
            ]
        )
        # An 8-connected skeleton of an oblique line is up to ~8% longer than the line: a thickness
        # estimate for ranking images, not a ruler.
        assert P.stroke_width(images) == pytest.approx([width] * 3, rel=0.2)
    widths = P.stroke_width(np.stack([stroke(w, (9, 5), (19, 23)) for w in (1.0, 2.0, 3.0, 4.0, 5.0)]))
    assert np.all(np.diff(widths) >= 0) and widths[-1] > 2.5 * widths[0]


def test_a_ring_has_no_ends_and_still_measures_its_width():
    yy, xx = np.mgrid[0:28, 0:28].astype(float)
    radius = np.hypot(xx - 14, yy - 14)
    rings = np.stack([np.where(np.abs(radius - 8) <= w / 2, 255, 0).astype(np.uint8) for w in (2, 3, 4)])
    assert P.skeleton_ends(P.skeleton(P.ink_mask(rings))).tolist() == [0, 0, 0]
    assert P.stroke_width(rings) == pytest.approx([2, 3, 4], abs=0.7)


def test_slant_is_the_shear_of_the_ink():
    # x = 14 + k * (14 - y): the top leans right by k pixels per pixel of height.
    shears = [-0.4, -0.2, 0.0, 0.2, 0.4]
    images = np.stack([stroke(3.0, (14 + 9 * k, 5), (14 - 9 * k, 23)) for k in shears])
    assert P.slant(images) == pytest.approx(shears, abs=0.03)
    assert np.isnan(P.slant(np.zeros((1, 28, 28), np.uint8)))[0]  # no ink, no slant


def test_centre_of_mass_and_ink_area():
    image = np.zeros((2, 28, 28), np.uint8)
    image[0, 5:9, 10:13] = 255  # 4 rows x 3 columns: centre (11, 6.5), 12 pixels of ink
    image[1, 20, 3] = 255
    image[1, 20, 7] = 127  # half-weight to the centre, below the ink threshold
    x, y = P.centre_of_mass(image)
    assert x == pytest.approx([11.0, (3 + 7 * 127 / 255) / (1 + 127 / 255)])
    assert y == pytest.approx([6.5, 20.0])
    assert P.ink_area(image).tolist() == [12.0, 1.0]


def test_measure_returns_every_property_per_image_and_rejects_bad_shapes():
    images = np.stack([stroke(3.0, (14, 4), (14, 24))] * 3)
    found = P.measure(images)
    assert set(found) == set(P.PROPERTIES)
    assert all(v.shape == (3,) for v in found.values())
    with pytest.raises(ValueError, match="one channel"):
        P.measure(np.zeros((2, 28, 28, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        P.measure(np.zeros((28, 28), np.uint8))
