"""Deterministic stratified splitting (each class keeps its share in every split)."""

from __future__ import annotations

import numpy as np


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return sorted index arrays (train, val, test)."""
    if not (0 <= val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"bad split fractions: val={val_fraction} test={test_fraction}")
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n_test = max(1, int(round(len(idx) * test_fraction)))
        n_val = int(round(len(idx) * val_fraction))
        if val_fraction > 0:
            n_val = max(1, n_val)
        test.extend(idx[:n_test])
        val.extend(idx[n_test : n_test + n_val])
        train.extend(idx[n_test + n_val :])
    return np.sort(train), np.sort(val), np.sort(test)
