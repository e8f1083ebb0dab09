"""What a training batch is made of: one of nine shifted views per image, canonical strides, and
the memory layout the device prefers.

Batches are read (raw uint8 rows, from memory or disk), converted and shifted one step ahead of
training, in a thread (:func:`prefetched`): reading by offset and numpy's conversion release the
GIL, so the next batch is ready when the step ends.

A shift of -1..1 pixels along each axis is one of nine views, numbered dy * 3 + dx (view 4 is the
image itself). Because there are only nine, the teacher's outputs for all of them can be cached
(:mod:`edgedistill.distill.teacher_cache`) and the student's view looked up. That is the small-image
augmentation (up to 32 px). Above it a view is a random-resized crop with an optional horizontal
flip (:func:`draw_crops`): an affine map of the image, sampled at the teacher's resolution and, for
a student at a lower one, that same view downscaled (antialiased), so both score one view; there
are too many to cache, and the teacher runs online on each batch.
"""

from __future__ import annotations

import queue
import threading

import math

import torch
import torch.nn.functional as F

N_VIEWS = 9
CROP_SCALE = (0.35, 1.0)  # share of the image's area a crop keeps (Inception-style; 0.08 is for ImageNet from scratch)
CROP_RATIO = (3 / 4, 4 / 3)


def draw_views(n: int, gen: torch.Generator) -> torch.Tensor:
    dy = torch.randint(0, 3, (n,), generator=gen)
    dx = torch.randint(0, 3, (n,), generator=gen)
    return dy * 3 + dx


def shift_views(x: torch.Tensor, views: torch.Tensor, fill: float | None = None) -> torch.Tensor:
    """Shift each sample by its view's (dy - 1, dx - 1) pixels, filling with the background."""
    n, _, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1), value=float(x.amin()) if fill is None else fill)
    dy, dx = views // 3, views % 3
    rows = dy[:, None] + torch.arange(h)[None, :]  # (n, h)
    cols = dx[:, None] + torch.arange(w)[None, :]  # (n, w)
    idx_n = torch.arange(n)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]
    return canonical(out.permute(0, 3, 1, 2))


def draw_crops(n: int, gen: torch.Generator, flip: bool = True) -> torch.Tensor:
    """``n`` random-resized-crop views as affine maps ``(n, 2, 3)`` of normalised coordinates: a box
    of ``CROP_SCALE`` of the area and ``CROP_RATIO`` aspect, inside the image, mirrored left-right
    half of the time when ``flip``."""
    area = torch.empty(n).uniform_(*CROP_SCALE, generator=gen)
    log_ratio = torch.empty(n).uniform_(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), generator=gen)
    w = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)  # half-extents in [-1, 1] units
    h = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    cx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=gen) * 2 - 1) * (1 - h)
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = w * sign, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    return theta


def crop_views(x: torch.Tensor, theta: torch.Tensor | None, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W) seen through its view ``theta`` (None: as it is), at its own
    size, then (for another ``size``) resized to ``size`` with antialiasing."""
    n, c, h, w = x.shape
    out = x
    if theta is not None:
        grid = F.affine_grid(theta.to(x.dtype), [n, c, h, w], align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if size is not None and tuple(size) != (h, w):
        out = F.interpolate(out, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return canonical(out)


def canonical(x: torch.Tensor) -> torch.Tensor:
    """``x`` with row-major strides on every axis, size-1 axes included. ``.contiguous()`` keeps a
    permuted tensor whose only odd stride is on a size-1 axis (a one-channel image batch), and
    torch's CPU convolution backward corrupts memory on such input (seen on 28x28 data)."""
    expected, step = [], 1
    for size in reversed(x.shape):
        expected.append(step)
        step *= size
    if tuple(reversed(expected)) == x.stride():
        return x
    return x.clone(memory_format=torch.contiguous_format)


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


def prefetched(steps: list, load, pin: bool = False, depth: int = 2):
    """``(step, load(step))`` for each step in order, ``load`` running ``depth`` steps ahead in a
    thread; ``pin`` puts each loaded batch in pinned memory (asynchronous copies to a GPU). An
    error in ``load`` is raised here, at the step it belongs to."""
    if not steps:
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        for step in steps:
            if stop.is_set():
                return
            try:
                item = load(step)
                if pin:
                    item = tuple(t.pin_memory() for t in item) if isinstance(item, tuple) else item.pin_memory()
            except BaseException as err:  # handed to the consumer, which raises it
                ready.put((step, None, err))
                return
            ready.put((step, item, None))

    thread = threading.Thread(target=work, name="edgedistill-prefetch", daemon=True)
    thread.start()
    try:
        for _ in steps:
            step, item, err = ready.get()
            if err is not None:
                raise err
            yield step, item
    finally:
        stop.set()
        while thread.is_alive():  # let a blocked put finish so the thread sees the stop
            try:
                ready.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
