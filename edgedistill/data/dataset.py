"""The dataset contract every stage reads: raw images, labels and the preprocessing that turns them
into the model's float input.

Images are kept raw (as the app will see them, NHWC) so that the manifest's preprocessing is the
single definition of "how to feed the model": ``float = (raw * pixel_scale - mean) / std``.

A split's images are a numpy array in memory, or a :class:`~edgedistill.data.rows.DiskRows` on disk
for data bigger than memory; either way they stay raw (uint8) until a batch is asked for: stages
read float inputs a batch at a time (:meth:`ImageDataset.batch`, :meth:`ImageDataset.batches`), so
no float copy of a whole split is ever made.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

import numpy as np

from edgedistill.data.report import DataLoadReport
from edgedistill.data.resize import ResizedRows
from edgedistill.data.rows import DiskRows

# Rows per block when a whole split is walked for its raw bytes (hashing, statistics).
BLOCK_ROWS = 256
# Float inputs per block when a whole split goes through a model (evaluation, teacher outputs):
# bounded in bytes, so a 224 px split takes ~50 images a block and 8x8 digits the cap.
BLOCK_INPUT_MB = 32
MAX_BLOCK = 512


@dataclass(frozen=True)
class Preprocessing:
    """``float = (raw * pixel_scale - mean[c]) / std[c]`` per channel c."""

    pixel_scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Raw NHWC images -> float32 NCHW model input."""
        x = raw.astype(np.float32) * np.float32(self.pixel_scale)
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        x = (x - mean) / std
        # A real copy, not np.ascontiguousarray: for one channel the transposed view already counts
        # as contiguous and would keep a non-canonical stride on the size-1 channel axis, which
        # torch's CPU convolution backward mishandles (seen: heap corruption on 28x28 inputs).
        return x.transpose(0, 3, 1, 2).copy(order="C")

    def to_dict(self) -> dict:
        return {"pixel_scale": self.pixel_scale, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(float(d["pixel_scale"]), tuple(map(float, d["mean"])), tuple(map(float, d["std"])))


@dataclass(frozen=True)
class Split:
    """One split: raw images ``(N, H, W, C)`` (in memory or on disk) and integer labels ``(N,)``."""

    images: np.ndarray | DiskRows
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"images must be (N, H, W, C), got shape {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> "Split":
        """The split's rows at ``index`` (on disk: a view of the same file, nothing read)."""
        images = self.images.subset(index) if hasattr(self.images, "subset") else self.images[index]
        return Split(images, self.labels[index])

    @property
    def on_disk(self) -> bool:
        images = self.images.base if isinstance(self.images, ResizedRows) else self.images  # it reads its base
        return isinstance(images, DiskRows)


@dataclass(frozen=True)
class ImageDataset:
    name: str
    train: Split
    val: Split
    test: Split
    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    # Free-form provenance shown in the manifest (where the data came from, how it was split).
    source: dict = field(default_factory=dict)
    # What loading did to the data (unreadable files skipped, images resized); empty when nothing.
    load_report: DataLoadReport = field(default_factory=DataLoadReport)
    # For a view at a student's resolution (:meth:`resized`): the dataset it was resized from.
    resized_from: "ImageDataset | None" = field(default=None, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the raw images."""
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    @property
    def input_shape_nchw(self) -> tuple[int, int, int]:
        h, w, c = self.image_shape
        return (c, h, w)

    def batch(self, split: str, index) -> np.ndarray:
        """Float32 NCHW model inputs of a split's rows at ``index`` (a slice or index array)."""
        return self.preprocessing.apply(getattr(self, split).images[index])

    def block_rows(self) -> int:
        """How many images a block of float inputs holds (``BLOCK_INPUT_MB`` of them, 16 to 512)."""
        h, w, c = self.image_shape
        return int(min(MAX_BLOCK, max(16, BLOCK_INPUT_MB * 2**20 // (h * w * c * 4))))

    def batches(self, split: str, rows: int | None = None):
        """``(start, float32 NCHW inputs)`` for consecutive blocks of a split, in order."""
        images = getattr(self, split).images
        rows = rows or self.block_rows()
        for start in range(0, len(images), rows):
            yield start, self.preprocessing.apply(images[start : start + rows])

    def fill_value(self) -> float:
        """The smallest model-input value over the training split: the background a shifted view
        is padded with. Computed from per-channel raw minima, a block at a time."""
        images = self.train.images
        if not len(images):
            return 0.0
        raw_min = np.full(images.shape[-1], np.inf)
        for start in range(0, len(images), BLOCK_ROWS):
            block = images[start : start + BLOCK_ROWS]
            raw_min = np.minimum(raw_min, block.reshape(-1, block.shape[-1]).min(0))
        return float(self.preprocessing.apply(raw_min.reshape(1, 1, 1, -1).astype(images.dtype)).min())

    @property
    def on_disk(self) -> bool:
        return any(s.on_disk for s in (self.train, self.val, self.test))

    def resized(self, size: tuple[int, int]) -> "ImageDataset":
        """This dataset with every image resized to ``size`` (H, W) as it is read
        (:class:`~edgedistill.data.resize.ResizedRows`): a student's view at its own resolution.
        Itself when the size is already its own."""
        from edgedistill.data.resize import INTERPOLATION

        size = (int(size[0]), int(size[1]))
        if size == self.image_shape[:2]:
            return self
        base = self.resized_from or self
        if size == base.image_shape[:2]:
            return base
        split = lambda s: Split(ResizedRows(s.images, size), s.labels)  # noqa: E731
        view = dataclasses.replace(self, train=split(base.train), val=split(base.val), test=split(base.test),
                                   source={**base.source, "resized_to": {"size": list(size), "from": list(
                                       base.image_shape[:2]), "interpolation": INTERPOLATION}},
                                   resized_from=base)
        digest = hashlib.sha256(f"{base.fingerprint()} resized {size} {INTERPOLATION}".encode()).hexdigest()
        object.__setattr__(view, "_fingerprint", digest)
        return view

    def fingerprint(self) -> str:
        """A content hash of every split, labels and preprocessing: keys caches and the manifest.
        Computed once per dataset (its arrays are never changed in place): the teacher cache, every
        student stage's key and the manifest all ask for it."""
        cached = self.__dict__.get("_fingerprint")
        if cached is not None:
            return cached
        digest = hashlib.sha256()
        for split in (self.train, self.val, self.test):
            digest.update(str(split.images.shape).encode())
            digest.update(str(split.images.dtype).encode())
            # Block by block: the same digest as the whole array's bytes, without a copy of it.
            for start in range(0, len(split.images), BLOCK_ROWS):
                digest.update(np.ascontiguousarray(split.images[start : start + BLOCK_ROWS]).tobytes())
            digest.update(np.ascontiguousarray(split.labels.astype(np.int64)).tobytes())
        digest.update("\n".join(self.class_names).encode())
        digest.update(repr(self.preprocessing.to_dict()).encode())
        object.__setattr__(self, "_fingerprint", digest.hexdigest())  # frozen: no field, a memo
        return self.__dict__["_fingerprint"]
