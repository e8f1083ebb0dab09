"""Decoding an ImageFolder's images: in parallel by DataLoader workers, into memory or into the
on-disk cache of decoded, resized images that later builds reuse.

Workers decode and resize; the main process only copies their uint8 rows into place, so memory is
a few batches of images whatever the dataset's size. With a cache folder the rows go to a
:class:`~edgedistill.data.rows.DiskRows` file there, keyed by everything that decides its bytes
(the root, each file's name, size and modification time, the requested size and channels, the
strictness), and the whole reading result (splits, labels, class names, what was skipped or
resized) is kept beside it: a second build over unchanged files reads no image at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from edgedistill.data.dataset import Split
from edgedistill.data.resize import resize_pil
from edgedistill.data.rows import DiskRows, RowWriter

# Bump when the decoding changes what bytes an image gives (resampling, channel conversion).
# 2: transparent pixels composited on black (1 dropped the alpha channel).
FORMAT_VERSION = 2
INDEX = "index.json"
_BATCH = 32
_PARALLEL_FROM = 256  # images; fewer decode faster in-process than workers start
# Modes whose pixels carry alpha; other modes may still mark a colour or palette entry transparent
# ("transparency" in the PNG's info).
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


class Header(NamedTuple):
    """What the header pass learns of one image without decoding it."""

    path: Path
    label: int
    hw: tuple[int, int]  # (H, W)
    gray: bool


@dataclass
class DecodeNotes:
    """What decoding changed, image by image, for the load report."""

    resized_from: Counter = field(default_factory=Counter)  # original (H, W) -> images resized from it
    transparent: list[Path] = field(default_factory=list)  # had transparent pixels: composited on black
    converted: list[Path] = field(default_factory=list)  # grayscale made RGB, or colour made grayscale


def store_key(root: Path, files: dict[str, list[tuple[Path, int]]], image_size, channels, strict: bool) -> str:
    digest = hashlib.sha256(json.dumps({"v": FORMAT_VERSION, "root": str(root.resolve()), "size": image_size,
                                        "channels": channels, "strict": strict}).encode())
    for split, entries in files.items():
        for path, label in entries:
            st = path.stat()
            digest.update(f"{split}\0{path.relative_to(root)}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def load_stored(folder: Path) -> dict | None:
    """The stored reading result in ``folder`` (None when absent or incomplete): its ``index``
    dict and the splits as :class:`Split` on disk."""
    index_file = folder / INDEX
    if not index_file.is_file():
        return None
    try:
        index = json.loads(index_file.read_text())
        splits = {name: Split(DiskRows.open(folder / f"{name}.u8"), np.load(folder / f"{name}.labels.npy"))
                  for name in index["splits"]}
    except (OSError, ValueError, KeyError):
        return None
    if any(sp.images.path.stat().st_size != sp.images.nbytes or len(sp.labels) != len(sp.images)
           for sp in splits.values()):
        return None  # a truncated or mismatched file: decode again rather than fail mid-build
    return {"index": index, "splits": splits}


def save_index(folder: Path, splits: dict[str, Split], index: dict) -> None:
    for name, split in splits.items():
        np.save(folder / f"{name}.labels.npy", split.labels)
    tmp = folder / (INDEX + ".partial")
    tmp.write_text(json.dumps({**index, "splits": list(splits)}))
    os.replace(tmp, folder / INDEX)  # last: its presence says the folder is complete


def fresh_folder(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


class _Files:
    """The decode job as a map-style dataset: item i is (pixels or None, had transparent pixels,
    why unreadable)."""

    def __init__(self, paths: list[Path], size: tuple[int, int], channels: int) -> None:
        self.paths, self.size, self.channels = paths, size, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return *load_pixels(self.paths[i], self.size, self.channels), ""
        except Exception as err:  # truncated or corrupt data often shows only when decoding
            return None, False, f"{type(err).__name__}: {err}"


def decode_split(headers: list[Header], size: tuple[int, int], channels: int, on_unreadable,
                 notes: DecodeNotes, dest: Path | None) -> Split:
    """Decode ``headers`` to ``size`` and ``channels``, recording in ``notes`` what that changed;
    unreadable files go to ``on_unreadable(path, reason)`` (which raises under ``strict``) and are
    left out. ``dest`` None keeps the rows in memory, else writes them to that file."""
    import torch.utils.data as tud

    height, width = size
    n_all = len(headers)
    writer = RowWriter(dest, n_all, (height, width, channels), np.uint8) if dest is not None else None
    images = None if writer is not None else np.empty((n_all, height, width, channels), dtype=np.uint8)
    labels = np.empty(n_all, dtype=np.int64)
    workers = min(4, os.cpu_count() or 1) if n_all >= _PARALLEL_FROM else 0
    # Forked workers (torch's default on Linux): a fork server or spawn would re-import the caller's
    # __main__, which breaks any script without a main guard. A worker only decodes with PIL and
    # numpy, never touching the parent's torch or JAX thread pools, so their locks cannot bite it.
    loader = tud.DataLoader(_Files([h.path for h in headers], size, channels), batch_size=_BATCH,
                            num_workers=workers, collate_fn=list)
    n = 0
    try:
        for b, batch in enumerate(loader):
            rows = []
            for j, (pixels, transparent, reason) in enumerate(batch):
                header = headers[b * _BATCH + j]
                if pixels is None:
                    on_unreadable(header.path, reason)
                    continue
                rows.append(pixels)
                labels[n + len(rows) - 1] = header.label
                _note(notes, header, size, channels, transparent)
            if rows:
                block = np.stack(rows)
                if writer is not None:
                    writer.write(n, block)
                else:
                    images[n : n + len(rows)] = block
                n += len(rows)
    except BaseException:
        if writer is not None:
            writer.abandon()
        raise
    if writer is not None:
        return Split(writer.publish(n), labels[:n])
    return Split(images[:n], labels[:n])


def _note(notes: DecodeNotes, header: Header, size: tuple[int, int], channels: int, transparent: bool) -> None:
    if header.hw != size:
        notes.resized_from[header.hw] += 1
    if transparent:
        notes.transparent.append(header.path)
    if header.gray != (channels == 1):
        notes.converted.append(header.path)


def load_pixels(path: Path, size: tuple[int, int], channels: int) -> tuple[np.ndarray, bool]:
    """The image at ``size`` (H, W) with ``channels``, and whether it had transparent pixels."""
    height, width = size
    with Image.open(path) as image:
        if image.mode.startswith("I"):  # 16-bit grayscale: keep the high byte, convert("L") would clip
            image = Image.fromarray((np.asarray(image).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8))
        image, transparent = composite_on_black(image)
        pixels = np.asarray(resize_pil(image.convert("L" if channels == 1 else "RGB"), size))
    return pixels.reshape(height, width, channels), transparent


def composite_on_black(image: Image.Image) -> tuple[Image.Image, bool]:
    """An image with alpha laid over opaque black (colour times alpha: premultiplied alpha, what a
    fresh zeroed RGB canvas shows), and whether any pixel was not fully opaque.

    Dropping the alpha instead, as ``convert("RGB")`` does, trains on whatever colour the encoder
    left under transparent pixels: often black, but as often the colour before the cut-out, or noise.
    Black makes it defined, and equals the dropped alpha wherever the encoder zeroed those pixels."""
    if image.mode not in _ALPHA_MODES and "transparency" not in image.info:
        return image, False
    rgba = image.convert("RGBA")
    if rgba.getextrema()[3][0] == 255:  # an alpha channel, but every pixel opaque: nothing to do
        return image, False
    black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(black, rgba).convert("RGB"), True
