"""Read an ImageFolder tree: one folder per class holding PNG/JPEG images.

Two layouts are accepted::

    root/train/<class>/*.png   root/test/<class>/*.png   (root/val/<class>/*.png optional)
    root/<class>/*.png                                    (everything; the loader splits it)

Class indices follow ``labels.txt`` at the root when present (one name per line, line i = class i),
else the sorted folder names, which is also torchvision's ``ImageFolder`` order, so a teacher
trained with torchvision keeps its class indices. Every split must have the same class folders.

Images are read twice: a header pass (cheap: mode and size only) decides the channel count and
the common size, then DataLoader workers decode them into one preallocated array, in memory or in
the on-disk cache of decoded images (:mod:`edgedistill.data.decoded`), which a later read of the
same unchanged files takes as it is. Unreadable files (skipped, or fatal with ``strict``), resized
images, images with transparent pixels (composited on black) and images whose channels were
converted (grayscale among colour, or as ``channels`` asks) are recorded in the returned
``load_report``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from edgedistill.data import decoded
from edgedistill.data.dataset import Split
from edgedistill.data.npz import RawSplits
from edgedistill.data.report import DataLoadReport
from edgedistill.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLIT_NAMES = ("train", "val", "test")
LABELS_FILE = "labels.txt"
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_SHOWN = 20  # how many files the manifest names per kind (skipped, transparent, converted)


def read_imagefolder(
    root: Path,
    *,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    strict: bool = False,
    store: Path | None = None,
) -> RawSplits:
    """Read ``root``; ``image_size`` is (H, W); ``channels`` 1 or 3 forces grayscale / RGB.
    ``store``: a folder for the on-disk cache of decoded images (:mod:`edgedistill.data.decoded`);
    None decodes into memory."""
    split_dirs, layout = _split_dirs(root)
    class_names, labels_from = _class_names(root, split_dirs)
    files: dict[str, list[tuple[Path, int]]] = {}
    ignored = 0
    for name, folder in split_dirs.items():
        files[name], n_ignored = _list_images(folder, class_names)
        ignored += n_ignored
    size_key = list(image_size) if image_size is not None else None
    folder = store / decoded.store_key(root, files, size_key, channels, strict) if store is not None else None
    if folder is not None:
        stored = decoded.load_stored(folder)
        if stored is not None and tuple(stored["index"]["class_names"]) == class_names:
            return _from_index(stored["index"], stored["splits"], class_names, ignored)
        decoded.fresh_folder(folder)

    skipped: list[tuple[Path, str]] = []  # (file, why it is unreadable)

    def unreadable(path: Path, reason: str) -> None:
        if strict:
            raise InputError(f"cannot read image {path} ({reason})",
                             hint="fix or delete the file, or drop --strict to skip unreadable images")
        skipped.append((path, reason))

    headers = {name: _read_headers(entries, unreadable) for name, entries in files.items()}
    all_headers = [h for hs in headers.values() for h in hs]
    gray = all(h.gray for h in all_headers)
    n_channels = channels if channels is not None else (1 if gray else 3)
    size, size_from = _target_size(root, [h.hw for h in all_headers], image_size)

    splits: dict[str, Split] = {}
    notes = decoded.DecodeNotes()
    for name, split_headers in headers.items():
        dest = folder / f"{name}.u8" if folder is not None else None
        splits[name] = decoded.decode_split(split_headers, size, n_channels, unreadable, notes, dest)
        _require_every_class(splits[name], class_names, split_dirs[name])

    resized = sum(notes.resized_from.values())
    index = {
        "class_names": list(class_names),
        "skipped": [[_relative(path, root), reason] for path, reason in skipped],
        "resized_from": [[list(hw), count] for hw, count in notes.resized_from.items()],
        "size": list(size), "size_from": size_from,
        "transparent": _first_paths(notes.transparent, root),
        "converted": {**_first_paths(notes.converted, root), "to": "grayscale" if n_channels == 1 else "RGB",
                      "forced": channels is not None},
        "details": {
            "layout": layout,
            "class_names_from": labels_from,
            "channels": n_channels,
            "channels_from": "forced" if channels is not None
            else ("all grayscale" if gray else "colour images present"),
            "image_size": list(size),
            "image_size_from": size_from if size_from == "given" or resized else "all equal",
            "resized": resized,
            "skipped": len(skipped),
            "skipped_files": [f"{path} ({reason})" for path, reason in skipped[:_SHOWN]],
        },
    }
    if folder is not None:
        decoded.save_index(folder, splits, index)
    return _from_index(index, splits, class_names, ignored)


def _from_index(index: dict, splits: dict[str, Split], class_names: tuple[str, ...], ignored: int) -> RawSplits:
    converted = index["converted"]
    report = DataLoadReport.of(
        skipped=[path for path, _ in index["skipped"]],
        resized_from=Counter({tuple(hw): count for hw, count in index["resized_from"]}),
        target_size=tuple(index["size"]),
        target_from=index["size_from"],
        transparent=index["transparent"]["paths"],
        transparent_count=index["transparent"]["count"],
        converted=converted["paths"],
        converted_count=converted["count"],
        converted_to=converted["to"] if converted["count"] else "",
        converted_forced=converted["forced"],
    )
    return RawSplits(
        train=splits["train"],
        val=splits.get("val"),
        test=splits.get("test"),
        class_names=class_names,
        details={**index["details"], "ignored_non_images": ignored},
        load_report=report,
    )


def _first_paths(paths: list[Path], root: Path) -> dict:
    """How many, and the first :data:`_SHOWN` relative paths: a note that may cover every image
    (``--channels`` on a large tree) stays small in the cache index and the manifest."""
    return {"count": len(paths), "paths": [_relative(p, root) for p in paths[:_SHOWN]]}


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:  # not under root (cannot happen for files listed under it); keep it whole
        return str(path)


def _split_dirs(root: Path) -> tuple[dict[str, Path], str]:
    subdirs = _visible_dirs(root)
    found = {d.name: d for d in subdirs if d.name in SPLIT_NAMES}
    if not found:
        if not subdirs:
            raise InputError(f"{root} has no class folders",
                             hint="put each class's images in its own folder: ROOT/<class>/*.png")
        return {"train": root}, "flat"
    if "train" not in found:
        raise InputError(f"{root} has {'/, '.join(sorted(found))}/ but no train/ folder",
                         hint="add train/<class>/ folders, or drop the split folders and let edgedistill split")
    others = sorted(d.name for d in subdirs if d.name not in SPLIT_NAMES)
    if others:
        raise InputError(
            f"{root} mixes split folders (train/ ...) with other folders: {', '.join(others)}",
            hint="only train/, val/ and test/ may sit beside each other; move class folders inside them",
        )
    return {name: found[name] for name in SPLIT_NAMES if name in found}, "splits"


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))


def _class_names(root: Path, split_dirs: dict[str, Path]) -> tuple[tuple[str, ...], str]:
    labels_file = root / LABELS_FILE
    if labels_file.is_file():
        names = [line.strip() for line in labels_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not names:
            raise InputError(f"{labels_file} is empty", hint="write one class name per line, or delete it")
        duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
        if duplicates:
            raise InputError(f"{labels_file} lists {', '.join(duplicates)} more than once",
                             hint="each class name appears on exactly one line")
        expected, origin = tuple(names), LABELS_FILE
    else:
        expected = tuple(d.name for d in _visible_dirs(split_dirs["train"]))
        origin = "folder names"
    for name, folder in split_dirs.items():
        present = {d.name for d in _visible_dirs(folder)}
        missing = [n for n in expected if n not in present]
        extra = sorted(present - set(expected))
        if missing or extra:
            reference = LABELS_FILE if origin == LABELS_FILE else f"{split_dirs['train']}"
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
            if extra:
                parts.append(f"unexpected {', '.join(extra[:5])}" + (" ..." if len(extra) > 5 else ""))
            raise InputError(
                f"{folder} has {len(present)} class folders, {reference} has {len(expected)}: {'; '.join(parts)}",
                hint="every split needs the same class folders"
                + (f" and every name in {LABELS_FILE} needs a folder" if origin == LABELS_FILE else ""),
            )
    return expected, origin


def _list_images(folder: Path, class_names: tuple[str, ...]) -> tuple[list[tuple[Path, int]], int]:
    entries: list[tuple[Path, int]] = []
    ignored = 0
    for index, name in enumerate(class_names):
        class_dir = folder / name
        found = 0
        others: Counter[str] = Counter()
        for path in sorted(class_dir.rglob("*")):
            if not path.is_file() or any(part.startswith(".") for part in path.relative_to(class_dir).parts):
                continue
            if path.suffix.lower() in IMAGE_SUFFIXES:
                entries.append((path, index))
                found += 1
            else:
                others[path.suffix.lower() or "(no suffix)"] += 1
        ignored += sum(others.values())
        if not found:
            seen = f"; it holds only {', '.join(sorted(others))} files" if others else ""
            raise InputError(f"class folder {class_dir} has no PNG/JPEG images{seen}",
                             hint="add images to it or remove the folder")
    return entries, ignored


def _read_headers(entries: list[tuple[Path, int]], unreadable) -> list[decoded.Header]:
    headers = []
    for path, label in entries:
        try:
            with Image.open(path) as image:
                width, height = image.size
                headers.append(decoded.Header(path, label, (height, width), _is_gray(image)))
        except Exception as err:  # PIL raises many kinds of error on bad files; each is "unreadable"
            unreadable(path, f"{type(err).__name__}: {err}")
    return headers


def _is_gray(image: Image.Image) -> bool:
    if image.mode in _GRAY_MODES:
        return True
    if image.mode == "P":
        palette = image.getpalette() or []
        return all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))
    return False


def _target_size(
    root: Path, sizes: list[tuple[int, int]], image_size: tuple[int, int] | None
) -> tuple[tuple[int, int], str]:
    """The (H, W) every image is brought to, and why: ``"given"`` or ``"most common"``."""
    if not sizes:
        raise InputError(f"no readable images under {root}", hint="check the files are PNG or JPEG images")
    if image_size is not None:
        return (int(image_size[0]), int(image_size[1])), "given"
    return Counter(sizes).most_common(1)[0][0], "most common"


def _require_every_class(split: Split, class_names: tuple[str, ...], folder: Path) -> None:
    present = np.bincount(split.labels, minlength=len(class_names))
    empty = [class_names[i] for i in np.flatnonzero(present == 0)]
    if empty:
        raise InputError(f"class folder(s) {', '.join(str(folder / n) for n in empty[:5])} hold no readable images",
                         hint="add readable PNG/JPEG images or remove the folder")
