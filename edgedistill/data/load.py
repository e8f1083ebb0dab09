"""Load the user's data (an ImageFolder tree or an ``.npz``) or the built-in digits as one
:class:`ImageDataset`: raw uint8 splits, class names, preprocessing and provenance.

Split policy, the same for every format:

- train, val and test given: used as they are.
- train and test given: val is carved out of train (``val_fraction`` of train, stratified).
- train and val given: test is carved out of train (``test_fraction`` of train). val is never used
  as the test set: the test split must stay untouched by model selection.
- only train (or one folder of class folders): split into train/val/test by ``val_fraction`` and
  ``test_fraction`` of all images.

Every carve is stratified and deterministic for a given ``split_seed``.
Preprocessing is ``float = (raw / 255 - mean) / std``; mean/std are the given values, else the
per-channel statistics of the training split.

What loading did to the data (unreadable images skipped, images resized) is the dataset's
``load_report``; the loader does not raise Python warnings for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from edgedistill.data.dataset import ImageDataset, Preprocessing, Split
from edgedistill.data.digits import load_digits_dataset
from edgedistill.data.imagefolder import read_imagefolder
from edgedistill.data.npz import RawSplits, read_npz
from edgedistill.data.report import DataLoadReport, size_text
from edgedistill.data.resize import resize_pil
from edgedistill.data.split import smallest_splittable, stratified_split
from edgedistill.errors import InputError

UINT8_PIXEL_SCALE = 1.0 / 255.0
# The smallest image side the pipeline builds for. Below 32 px the students keep a full-resolution
# stem and halve the map in each stage after the first (models/staged.py), so the built-in
# teacher's three-stage students take 4x4 to a 1x1 map, and LiteRT's XNNPACK delegate fails to
# prepare such a .tflite ("failed to reshape runtimeNode"); 5x5 ends at 2x2 and runs. Measured: the
# resnet and mobilenet students exported fp32 at 4 and 5 px, and whole builds (int8 included) at 3
# and 5 px. Applied to each side: a 4x8 image happens to run (its last map is 1x2), but a rule per
# side is one a user can follow. Students with more stride-2 stages (a 4-stage teacher's) need
# more; the data stage cannot know the teacher yet.
MIN_IMAGE_SIDE = 5

Stat = float | Sequence[float] | None


def load_dataset(
    path: Path | str | None,
    *,
    mean: Stat = None,
    std: Stat = None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    split_seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    strict: bool = False,
    store: Path | None = None,
) -> ImageDataset:
    """``path`` None means the built-in digits. ``image_size`` is (H, W); ``channels`` 1 or 3 converts
    grayscale <-> RGB; ``strict`` makes an unreadable image fatal instead of skipped. ``store``: the
    folder of the on-disk cache of decoded ImageFolder images (None: decode into memory)."""
    _check_options(image_size, channels, val_fraction, test_fraction)
    if path is None:
        return _builtin(mean, std, image_size, channels, split_seed, val_fraction, test_fraction)

    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"data path {path} does not exist",
                         hint="give a folder of class folders (ImageFolder) or an .npz file")
    if path.is_dir():
        kind = "imagefolder"
        raw = read_imagefolder(path, image_size=image_size, channels=channels, strict=strict, store=store)
    elif path.suffix.lower() == ".npz":
        kind = "npz"
        raw = _conform_raw(read_npz(path), image_size, channels)
    else:
        raise InputError(
            f"data path {path} is neither a folder nor an .npz file",
            hint="give a folder of class folders (ImageFolder) or an .npz with x_train, y_train, x_test, y_test",
        )

    # Refused here, after loading and before anything trains: data no classifier can learn from.
    _require_two_classes(raw.class_names, path, kind)
    _require_image_size(raw.train.images.shape[1:3], path)
    train, val, test, recipe = _complete_splits(raw, split_seed, val_fraction, test_fraction)
    _require_training_images(raw.train, train, raw.class_names, path, recipe, (val_fraction, test_fraction))
    preprocessing = _preprocessing(train.images, mean, std, path)
    source = {
        "kind": kind,
        "path": str(path.resolve()),
        "split": {"seed": split_seed, "val_fraction": val_fraction, "test_fraction": test_fraction,
                  "stratified": True, **recipe},
        "counts": {"train": len(train), "val": len(val), "test": len(test)},
        "skipped": raw.details.get("skipped", 0),
        "decoded": "on disk (cache of decoded images)" if raw.train.on_disk else "in memory",
        "normalization": {"mean": "given" if mean is not None else "train statistics",
                          "std": "given" if std is not None else "train statistics"},
        **{k: v for k, v in raw.details.items() if k != "skipped"},
    }
    return ImageDataset(
        name=path.stem if path.is_file() else path.resolve().name,
        train=train, val=val, test=test,
        class_names=raw.class_names,
        preprocessing=preprocessing,
        source=source,
        load_report=raw.load_report,
    )


def _check_options(image_size, channels, val_fraction: float, test_fraction: float) -> None:
    if channels is not None and channels not in (1, 3):
        raise InputError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    if image_size is not None and (len(image_size) != 2 or min(image_size) < 1):
        raise InputError(f"image size must be two positive numbers H W, got {image_size}",
                         hint="give the flag twice: --image-size H --image-size W")
    if image_size is not None and min(image_size) < MIN_IMAGE_SIDE:
        raise InputError(
            f"--image-size {size_text(image_size)} is below the smallest images edgedistill builds for, "
            f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}",
            hint=f"give at least --image-size {MIN_IMAGE_SIDE} --image-size {MIN_IMAGE_SIDE}",
        )
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise InputError(f"bad split fractions: val {val_fraction}, test {test_fraction}",
                         hint="each must be in (0, 1) and together below 1")


def _builtin(mean, std, image_size, channels, seed, val_fraction, test_fraction) -> ImageDataset:
    dataset = load_digits_dataset(seed, val_fraction, test_fraction)
    if image_size is not None or channels is not None:
        splits = (dataset.train, dataset.val, dataset.test)
        dataset = dataclasses.replace(
            dataset,
            train=_conform(dataset.train, image_size, channels),
            val=_conform(dataset.val, image_size, channels),
            test=_conform(dataset.test, image_size, channels),
            load_report=_resize_report(splits, image_size),
        )
    n_channels = dataset.image_shape[2]
    fixed = dataset.preprocessing
    if mean is None and std is None and len(fixed.mean) == n_channels:
        return dataset
    here = Path("digits (built-in)")
    preprocessing = Preprocessing(
        fixed.pixel_scale,
        _per_channel(mean if mean is not None else fixed.mean, n_channels, "mean", here),
        _per_channel(std if std is not None else fixed.std, n_channels, "std", here),
    )
    return dataclasses.replace(dataset, preprocessing=preprocessing)


def _conform_raw(raw: RawSplits, image_size, channels) -> RawSplits:
    if image_size is None and channels is None:
        return raw
    return dataclasses.replace(
        raw,
        train=_conform(raw.train, image_size, channels),
        val=_conform(raw.val, image_size, channels) if raw.val is not None else None,
        test=_conform(raw.test, image_size, channels) if raw.test is not None else None,
        load_report=_resize_report((raw.train, raw.val, raw.test), image_size),
    )


def _resize_report(splits, image_size: tuple[int, int] | None) -> DataLoadReport:
    """What :func:`_conform` to ``image_size`` does to in-memory splits (None ones left out)."""
    if image_size is None:
        return DataLoadReport()
    target = (int(image_size[0]), int(image_size[1]))
    resized_from: dict[tuple[int, int], int] = {}
    for split in splits:
        if split is not None and tuple(split.images.shape[1:3]) != target:
            hw = tuple(split.images.shape[1:3])
            resized_from[hw] = resized_from.get(hw, 0) + len(split)
    return DataLoadReport.of(resized_from=resized_from, target_size=target, target_from="given")


def _conform(split: Split, image_size: tuple[int, int] | None, channels: int | None) -> Split:
    """Bring in-memory images to ``image_size`` (H, W) and ``channels``, the way the ImageFolder
    reader does while decoding (PIL's bilinear resize and ITU-R 601 luma)."""
    images = split.images
    n, h, w, c = images.shape
    target_c = channels or c
    target_hw = tuple(image_size) if image_size is not None else (h, w)
    if (target_c, target_hw) == (c, (h, w)):
        return split
    mode = "L" if target_c == 1 else "RGB"
    out = np.empty((n, target_hw[0], target_hw[1], target_c), dtype=np.uint8)
    for i, image in enumerate(images):
        pil = Image.fromarray(image[..., 0] if c == 1 else image).convert(mode)
        out[i] = np.asarray(resize_pil(pil, target_hw)).reshape(out.shape[1:])
    return Split(out, split.labels)


def _complete_splits(raw: RawSplits, seed: int, val_fraction: float, test_fraction: float):
    """Carve missing val/test out of train (see the module docstring); return the splits and the recipe."""
    train, val, test = raw.train, raw.val, raw.test
    if val is None and test is None:
        tr, va, te = stratified_split(train.labels, val_fraction, test_fraction, seed)
        recipe = {"provided": ["train"], "carved": {"val": "share of all images", "test": "share of all images"}}
        return _take(train, tr), _take(train, va), _take(train, te), recipe
    if val is None:
        # stratified_split's "test" part is the carved-out share: here it becomes val.
        tr, _, carved = stratified_split(train.labels, 0.0, val_fraction, seed)
        recipe = {"provided": ["train", "test"], "carved": {"val": "share of train"}}
        return _take(train, tr), _take(train, carved), test, recipe
    if test is None:
        tr, _, carved = stratified_split(train.labels, 0.0, test_fraction, seed)
        recipe = {"provided": ["train", "val"], "carved": {"test": "share of train"}}
        return _take(train, tr), val, _take(train, carved), recipe
    return train, val, test, {"provided": ["train", "val", "test"], "carved": {}}


def _take(split: Split, index: np.ndarray) -> Split:
    return split.take(index)


def _require_two_classes(class_names: tuple[str, ...], path: Path, kind: str) -> None:
    """One class: every answer is right, so training, the teacher check and the accuracy gate all
    pass on a model that has learnt nothing."""
    if len(class_names) >= 2:
        return
    what = (f"one class folder ({class_names[0]})" if kind == "imagefolder"
            else f"one class ({class_names[0]}) in y_train")
    hint = ("add a folder of images for each other class" if kind == "imagefolder"
            else "y_train must hold examples of at least two classes, labelled 0..K-1")
    raise InputError(f"{path} has {what}: a classifier needs at least two classes", hint=hint)


def _require_image_size(hw: tuple[int, int], path: Path) -> None:
    if min(hw) < MIN_IMAGE_SIDE:
        raise InputError(
            f"{path}: images are {size_text(hw)}, below the smallest edgedistill builds for, "
            f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} (the students halve small images down to 1x1 feature maps, "
            "which LiteRT's XNNPACK delegate fails to run)",
            hint=f"upscale them with --image-size {MIN_IMAGE_SIDE} --image-size {MIN_IMAGE_SIDE} (or larger)",
        )


def _require_training_images(before: Split, train: Split, class_names: tuple[str, ...], path: Path,
                             recipe: dict, fractions: tuple[float, float]) -> None:
    """Every class keeps training images once val/test are carved out of train (the readers have
    already refused a class with no training images at all)."""
    counts = np.bincount(train.labels, minlength=len(class_names))
    empty = np.flatnonzero(counts == 0)
    if not len(empty):
        return
    had = np.bincount(before.labels, minlength=len(class_names))
    listed = ", ".join(f"{class_names[i]} ({had[i]} image{'s' if had[i] != 1 else ''})" for i in empty[:5])
    more = f" and {len(empty) - 5} more" if len(empty) > 5 else ""
    carved = recipe["carved"]
    if len(carved) == 2:  # one folder, or train alone: val and test both come out of it
        need = smallest_splittable(*fractions)
        how = f"splitting them into train, val and test needs at least {need} images per class"
    elif not carved:  # nothing was carved: a reader let an empty class through
        how = "every class needs training examples"
    else:
        (part,) = carved
        share = fractions[0] if part == "val" else fractions[1]
        need = smallest_splittable(0.0, share)
        how = (f"carving {part} out of train needs at least {need} training images per class; "
               f"or provide {part}/ (y_{part}) yourself")
    raise InputError(f"{path}: class(es) {listed}{more} have no training images after splitting", hint=how)


def _preprocessing(train_images: np.ndarray, mean: Stat, std: Stat, path: Path) -> Preprocessing:
    channels = train_images.shape[-1]
    if mean is None or std is None:
        data_mean, data_std = _channel_stats(train_images)
        # A constant channel in the training data: leave it unscaled rather than divide by zero.
        data_std = tuple(s if s > 0 else 1.0 for s in data_std)
    mean_c = _per_channel(mean, channels, "mean", path) if mean is not None else data_mean
    std_c = _per_channel(std, channels, "std", path) if std is not None else data_std
    return Preprocessing(UINT8_PIXEL_SCALE, mean_c, std_c)


def _per_channel(value: float | Sequence[float], channels: int, what: str, path: Path) -> tuple[float, ...]:
    values = (float(value),) if np.isscalar(value) else tuple(float(v) for v in value)  # type: ignore[union-attr]
    if what == "std" and min(values, default=0.0) <= 0:
        raise InputError(f"std must be positive, got {list(values)}")
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise InputError(f"{what} has {len(values)} values but the images of {path} have {channels} channel(s)",
                         hint=f"give one {what} value, or one per channel")
    return values


def _channel_stats(images, chunk_mb: int = 16) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of ``images / 255``: exact integer sums over blocks of ~``chunk_mb`` of
    raw pixels, so a split on disk is read once and no float copy of it is made."""
    channels = images.shape[-1]
    row_bytes = max(1, images.size // max(1, len(images)))
    chunk = max(1, chunk_mb * 2**20 // row_bytes)
    total = np.zeros(channels, dtype=np.uint64)
    squares = np.zeros(channels, dtype=np.uint64)
    for start in range(0, len(images), chunk):
        block = np.asarray(images[start : start + chunk]).reshape(-1, channels).astype(np.uint32)
        total += block.sum(0, dtype=np.uint64)
        squares += np.square(block).sum(0, dtype=np.uint64)
    count = images.size // channels
    mean = total.astype(np.float64) / count * UINT8_PIXEL_SCALE
    mean_square = squares.astype(np.float64) / count * UINT8_PIXEL_SCALE**2
    std = np.sqrt(np.maximum(mean_square - mean**2, 0.0))
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)
