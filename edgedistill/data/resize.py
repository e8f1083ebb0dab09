"""The one resize of raw images edgedistill does, and a lazy view of a split at another size.

A student may run at a lower resolution than the data (the select stage searches it): it trains,
is verified and ships on the raw images resized with :func:`resize_image` (PIL's bilinear filter on
uint8 pixels, which widens its support when it shrinks, so it antialiases), then normalised. The
manifest tells the app exactly this (``input.resize``); ``edgedistill verify`` replays the
bundle's full-size sample images through the same function.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

INTERPOLATION = "bilinear"  # PIL Image.Resampling.BILINEAR on uint8 pixels (antialiased when shrinking)


def resize_pil(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A PIL image brought to ``size`` (H, W): the filter every resize of edgedistill uses (the
    ImageFolder reader's, ``--image-size`` on in-memory data, a student's resolution)."""
    height, width = size
    if image.size == (width, height):
        return image
    return image.resize((width, height), Image.Resampling.BILINEAR)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One raw ``(H, W, C)`` uint8 image (C = 1 or 3) brought to ``size`` (H, W)."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    channels = image.shape[2]
    pil = Image.fromarray(image[..., 0] if channels == 1 else image)
    return np.asarray(resize_pil(pil, size)).reshape(height, width, channels)


def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Raw ``(N, H, W, C)`` uint8 images brought to ``size`` (H, W)."""
    out = np.empty((len(images), size[0], size[1], images.shape[3]), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = resize_image(image, size)
    return out


class ResizedRows:
    """The rows of an image array (in memory or a :class:`~edgedistill.data.rows.DiskRows`)
    resized to ``size`` when they are read: the same array face as the rows themselves."""

    def __init__(self, base, size: tuple[int, int]) -> None:
        self.base = base
        self.hw = (int(size[0]), int(size[1]))
        self.dtype = np.dtype(np.uint8)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.base), *self.hw, self.base.shape[3])

    @property
    def ndim(self) -> int:
        return 4

    @property
    def size(self) -> int:  # elements, as numpy's
        return int(np.prod(self.shape, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key) -> np.ndarray:
        rows = self.base[key]
        if rows.ndim == 3:
            return resize_image(rows, self.hw)
        return resize_images(rows, self.hw)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def subset(self, index: np.ndarray) -> "ResizedRows":
        base = self.base.subset(index) if hasattr(self.base, "subset") else self.base[index]
        return ResizedRows(base, self.hw)
