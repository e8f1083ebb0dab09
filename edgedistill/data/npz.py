"""Read a dataset saved as one ``.npz``: ``x_train, y_train, x_test, y_test`` (+ optional ``x_val,
y_val``, ``class_names``).

Images are uint8, ``(N, H, W)`` or ``(N, H, W, C)`` with C = 1 or 3; labels are integers 0..K-1
(or floats that are all whole numbers), every class with examples in ``y_train``.
The file is opened with ``allow_pickle=False``: an ``.npz`` holding Python objects is refused rather
than unpickled. This module also defines :class:`RawSplits`, the shape every data reader returns.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgedistill.data.dataset import Split
from edgedistill.data.report import DataLoadReport
from edgedistill.errors import InputError

REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")
OPTIONAL_KEYS = ("x_val", "y_val", "class_names")


@dataclass(frozen=True)
class RawSplits:
    """What a data source holds before the split policy and normalisation are applied.

    ``val`` / ``test`` are None when the source does not provide them; the loader carves them out
    of ``train``.
    """

    train: Split
    val: Split | None
    test: Split | None
    class_names: tuple[str, ...]
    # Format-specific provenance for the manifest (layout, skipped files, resizing, ...).
    details: dict = field(default_factory=dict)
    # What reading did to the data (skipped files, resized images).
    load_report: DataLoadReport = field(default_factory=DataLoadReport)


def read_npz(path: Path) -> RawSplits:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise InputError(
            f"cannot read {path} as an .npz archive ({err})",
            hint="save the arrays with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)",
        ) from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise InputError(f"{path} holds a single array, not named arrays",
                         hint="save with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
    with archive:
        keys = set(archive.files)
        missing = [k for k in REQUIRED_KEYS if k not in keys]
        if missing:
            raise InputError(
                f"{path} lacks {', '.join(missing)}; it has {', '.join(sorted(keys)) or 'no arrays'}",
                hint="an .npz dataset needs x_train, y_train, x_test, y_test (x_val, y_val, class_names optional)",
            )
        if ("x_val" in keys) != ("y_val" in keys):
            raise InputError(f"{path} has only one of x_val / y_val", hint="give both or neither")

        splits = {"train": _split(archive, "train", path), "test": _split(archive, "test", path)}
        if "x_val" in keys:
            splits["val"] = _split(archive, "val", path)
        names = _class_names(archive, path) if "class_names" in keys else None

    shapes = {name: split.images.shape[1:] for name, split in splits.items()}
    if len(set(shapes.values())) > 1:
        described = ", ".join(f"x_{name} {shape}" for name, shape in shapes.items())
        raise InputError(f"{path}: the splits' images differ in shape (H, W, C): {described}",
                         hint="every split must hold images of one size and channel count")

    num_classes = _check_labels(splits, names, path)
    return RawSplits(
        train=splits["train"],
        val=splits.get("val"),
        test=splits["test"],
        class_names=names if names is not None else tuple(str(i) for i in range(num_classes)),
        details={"class_names_from": "class_names" if names is not None else "label indices"},
    )


def _read(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as err:  # object arrays need pickle, which we never allow
        raise InputError(f"{path}: {key} holds Python objects, which edgedistill does not unpickle",
                         hint=f"store {key} as a plain numeric array") from err


def _split(archive: np.lib.npyio.NpzFile, name: str, path: Path) -> Split:
    images = _images(_read(archive, f"x_{name}", path), f"x_{name}", path)
    labels = _labels(_read(archive, f"y_{name}", path), f"y_{name}", len(images), path)
    return Split(images, labels)


def _images(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    elif x.ndim != 4:
        raise InputError(f"{path}: {key} has shape {x.shape} (ndim {x.ndim})",
                         hint="images must be (N, H, W) or (N, H, W, C) with C = 1 or 3")
    if x.shape[-1] not in (1, 3):
        hint = "images must be channels-last (N, H, W, C) with C = 1 or 3"
        if x.shape[1] in (1, 3):
            hint += f"; this looks channels-first, use {key}.transpose(0, 2, 3, 1)"
        raise InputError(f"{path}: {key} has shape {x.shape}", hint=hint)
    if len(x) == 0:
        raise InputError(f"{path}: {key} holds no images")
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.integer) and x.min() >= 0 and x.max() <= 255:
        return x.astype(np.uint8)
    raise InputError(
        f"{path}: {key} is {x.dtype} with values {x.min()}..{x.max()}; raw images must be uint8 0..255",
        hint=f"convert with ({key} * 255).round().astype(np.uint8) if it holds floats in 0..1",
    )


def _labels(y: np.ndarray, key: str, n_images: int, path: Path) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        hint = "labels must be one class index per image, shape (N,)"
        if y.ndim == 2:
            hint += f"; one-hot labels can be converted with {key}.argmax(1)"
        raise InputError(f"{path}: {key} has shape {y.shape}", hint=hint)
    if len(y) != n_images:
        raise InputError(f"{path}: {key} has {len(y)} labels for {n_images} images",
                         hint="x and y of a split must have the same length")
    if np.issubdtype(y.dtype, np.floating):
        return _whole_labels(y, key, path)
    if not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"{path}: {key} is {y.dtype}, not integers",
                         hint=f"store class indices, e.g. {key}.astype(np.int64)")
    if y.dtype == np.uint64 and len(y) and y.max() > np.iinfo(np.int64).max:
        raise InputError(f"{path}: {key} holds label {y.max()}, far beyond any class index",
                         hint="labels must be class indices 0..K-1")
    return y.astype(np.int64)


def _whole_labels(y: np.ndarray, key: str, path: Path) -> np.ndarray:
    """Float labels are taken when every one is a whole number (saved as float32 by some tools),
    refused naming the first that is not (1.5, NaN, inf): a fraction is no class index."""
    exact = np.isfinite(y) & (y == np.round(y)) & (np.abs(y) < 2**31)
    if not exact.all():
        first = int(np.flatnonzero(~exact)[0])
        raise InputError(f"{path}: {key} holds {float(y[first]):g} at index {first}, not a whole-number class index",
                         hint=f"labels must be class indices 0..K-1, stored as integers: {key}.astype(np.int64)")
    return y.astype(np.int64)


def _check_labels(splits: dict[str, Split], names: tuple[str, ...] | None, path: Path) -> int:
    """Labels are class indices 0..K-1 (K from ``class_names``, else y_train's largest label + 1),
    and every class has training examples: a class seen only in val/test, or a gap in the
    numbering, is a class the model can never learn. Returns K."""
    for name, split in splits.items():
        if len(split.labels) and int(split.labels.min()) < 0:
            raise InputError(f"{path}: y_{name} holds label {int(split.labels.min())}, a negative class index",
                             hint="labels must be class indices 0..K-1")
    seen = np.unique(splits["train"].labels)
    num_classes = len(names) if names is not None else int(seen[-1]) + 1
    for name, split in splits.items():
        high = int(split.labels.max())
        if high < num_classes:
            continue
        if names is not None:
            raise InputError(f"{path}: y_{name} holds label {high}, outside 0..{num_classes - 1} "
                             f"({num_classes} classes, from class_names)",
                             hint="labels must be class indices 0..K-1, the same classes in every split")
        raise InputError(f"{path}: y_{name} holds label {high}, outside 0..{num_classes - 1}: a class never seen "
                         f"in training (y_train's largest label is {num_classes - 1})",
                         hint="every class needs training examples in y_train; labels are class indices 0..K-1")
    missing = _missing(seen, num_classes)
    if missing:
        raise InputError(f"{path}: {_describe_missing(missing, num_classes - len(seen), names, splits)}",
                         hint="every class needs training examples: add some to x_train/y_train, or "
                         + ("drop the class from class_names and renumber the labels"
                            if names is not None else "renumber the labels 0..K-1 without gaps")
                         + "; np.unique(y, return_inverse=True)[1] renumbers")
    return num_classes


def _missing(seen: np.ndarray, num_classes: int, shown: int = 5) -> list[int]:
    """The first ``shown`` indices in 0..num_classes-1 absent from the sorted ``seen``; a walk over
    ``seen``, not over the classes, which a stray huge label makes huge."""
    out: list[int] = []
    expected = 0
    for label in [*seen.tolist(), num_classes]:
        while expected < label and len(out) < shown:
            out.append(expected)
            expected += 1
        if len(out) >= shown:
            break
        expected = label + 1
    return out


def _describe_missing(missing: list[int], n_missing: int, names: tuple[str, ...] | None,
                      splits: dict[str, Split]) -> str:
    parts = []
    for index in missing:
        label = f"class {index}" + (f" ({names[index]})" if names is not None else "")
        elsewhere = [f"y_{n} holds {int((s.labels == index).sum())}" for n, s in splits.items()
                     if n != "train" and (s.labels == index).any()]
        parts.append(label + (f", though {' and '.join(elsewhere)}" if elsewhere else ""))
    more = f" and {n_missing - len(missing)} more" if n_missing > len(missing) else ""
    return f"y_train has no example of {'; '.join(parts)}{more}"


def _class_names(archive: np.lib.npyio.NpzFile, path: Path) -> tuple[str, ...]:
    names = _read(archive, "class_names", path)
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise InputError(f"{path}: class_names has shape {names.shape} and dtype {names.dtype}",
                         hint="store class_names as a 1-D string array, e.g. np.array(['cat', 'dog'])")
    decoded = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())
    if len(set(decoded)) != len(decoded):
        raise InputError(f"{path}: class_names has duplicates", hint="give each class a distinct name")
    return decoded
