"""Deterministic stratified splitting (each class keeps its share in every split)."""

from __future__ import annotations

import numpy as np


def carved_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """How many of a class's ``n`` images go to (val, test): at least one to test, and to val
    when it is carved at all, so a small class can be left with none for training."""
    n_test = max(1, int(round(n * test_fraction)))
    n_val = int(round(n * val_fraction))
    if val_fraction > 0:
        n_val = max(1, n_val)
    return n_val, n_test


def smallest_splittable(val_fraction: float, test_fraction: float) -> int:
    """The fewest images a class needs to keep at least one for training after the carve."""
    n = 1
    while n - sum(carved_counts(n, val_fraction, test_fraction)) < 1:
        n += 1
    return n


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
        n_val, n_test = carved_counts(len(idx), val_fraction, test_fraction)
        test.extend(idx[:n_test])
        val.extend(idx[n_test : n_test + n_val])
        train.extend(idx[n_test + n_val :])
    # Integer arrays even when a part is empty: np.sort([]) is float64, which cannot index.
    train_idx, val_idx, test_idx = (np.sort(np.asarray(part, dtype=np.int64)) for part in (train, val, test))
    return train_idx, val_idx, test_idx
