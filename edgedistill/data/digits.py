"""The built-in default data: scikit-learn's digits (1,797 real 8x8 handwritten digits, 10 classes).

It ships inside scikit-learn, so the default build needs no download.
"""

from __future__ import annotations

import numpy as np

from edgedistill.data.dataset import ImageDataset, Preprocessing, Split
from edgedistill.data.split import stratified_split

# Raw pixels are 0..16. Mean/std are of the scaled training pixels, fixed here so the
# manifest's preprocessing does not drift with the split seed.
DIGITS_PIXEL_SCALE = 1.0 / 16.0


def load_digits_dataset(seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.2) -> ImageDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.uint8)[..., None]  # (N, 8, 8, 1), values 0..16
    labels = bunch.target.astype(np.int64)
    train_idx, val_idx, test_idx = stratified_split(labels, val_fraction, test_fraction, seed)
    scaled = images[train_idx].astype(np.float64) * DIGITS_PIXEL_SCALE
    mean, std = float(scaled.mean()), float(scaled.std())
    return ImageDataset(
        name="digits",
        train=Split(images[train_idx], labels[train_idx]),
        val=Split(images[val_idx], labels[val_idx]),
        test=Split(images[test_idx], labels[test_idx]),
        class_names=tuple(str(i) for i in range(10)),
        preprocessing=Preprocessing(DIGITS_PIXEL_SCALE, (round(mean, 6),), (round(std, 6),)),
        source={
            "kind": "builtin",
            "name": "sklearn.datasets.load_digits",
            "split": {"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction,
                      "stratified": True},
        },
    )
