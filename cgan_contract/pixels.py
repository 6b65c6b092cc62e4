"""The pixel format: uint8, 0 is background and 255 is full ink; generators compute in tanh range [-1, 1]."""

from __future__ import annotations

import numpy as np

#: Pixel value of the background and of full ink in the ``image`` output.
BACKGROUND = 0
INK = 255


def to_uint8(tanh_images: np.ndarray) -> np.ndarray:
    """tanh range [-1, 1] -> uint8 as ``round((t + 1) * 127.5)``, clipped; exported graphs end with this."""
    return np.clip(np.round((tanh_images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def from_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [-1, 1], the generator's range."""
    return images.astype(np.float32) / 127.5 - 1.0
