"""The teacher's side of distillation: its logits and tapped features, computed once per training
image and view under inference mode (bf16 autocast on GPU), so that every epoch after the first
costs little more than training from labels."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgedistill.data.rows import RowWriter
from edgedistill.distill.batches import shift_views, to_device
from edgedistill.errors import EdgeDistillError, InputError
from edgedistill.models.taps import FeatureTaps


def teacher_outputs(teacher: nn.Module, paths: list[str], x: torch.Tensor, use_bf16: bool):
    with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_bf16):
        with FeatureTaps(teacher, paths) as taps:
            logits = teacher(x)
        feats = {p: taps.outputs[p] for p in paths}
    # Inference tensors may not be saved for backward (an MSE hint saves its target), so leave
    # inference mode with ordinary fp32 copies.
    return logits.float().clone(), {p: f.float().clone() for p, f in feats.items()}


class TeacherCache:
    """Teacher logits and tapped features for every training image, per view: ``views`` is 1
    (no augmentation) or 9 (every shift). ``inputs(start, stop)`` gives the float inputs of
    training images ``start:stop``. With ``store`` (a folder) the outputs go to files there and a
    batch's rows are read back by offset (:class:`~edgedistill.data.rows.DiskRows`), so a cache
    bigger than memory costs the build no memory; else they stay in memory."""

    def __init__(self, teacher: nn.Module, paths: list[str], n: int, inputs, views: int, fill: float,
                 device: torch.device, use_bf16: bool, store: Path | None = None, chunk: int = 256) -> None:
        self.views, self.n, self.paths = views, n, paths
        names = ["logits", *paths]
        memory: dict[str, list[torch.Tensor]] = {name: [] for name in names}
        writers: dict[str, RowWriter] = {}
        try:
            for view in range(views):
                for i in range(0, n, chunk):
                    xb = inputs(i, min(n, i + chunk))
                    if views > 1:
                        xb = shift_views(xb, torch.full((len(xb),), view, dtype=torch.long), fill)
                    out_l, out_f = teacher_outputs(teacher, paths, to_device(xb, device), use_bf16)
                    for name, out in zip(names, [out_l, *(out_f[p] for p in paths)]):
                        if store is None:
                            memory[name].append(out)
                            continue
                        if name not in writers:
                            writers[name] = RowWriter(store / f"{len(writers)}.f32", views * n, out.shape[1:], np.float32)
                        writers[name].write(view * n + i, out.cpu().numpy())
        except BaseException:
            for w in writers.values():
                w.abandon()
            raise
        # (views * N, ...): row view * N + i holds image i seen in that view
        if store is None:
            self._rows = {name: torch.cat(parts) for name, parts in memory.items()}
        else:
            self._rows = {name: w.publish(views * n) for name, w in writers.items()}
        self.device = device
        self.on_disk = store is not None

    def lookup(self, idx: torch.Tensor, views: torch.Tensor | None):
        rows = idx if views is None else views * self.n + idx
        if self.on_disk:
            got = {name: torch.from_numpy(r[rows.numpy()]).to(self.device) for name, r in self._rows.items()}
        else:
            rows = rows.to(self._rows["logits"].device)
            got = {name: r[rows] for name, r in self._rows.items()}
        return got["logits"], {p: got[p] for p in self.paths}

    def logits(self) -> torch.Tensor:
        """The teacher's logits of every training image in the first view (the image as it is),
        as a CPU float32 tensor of their own (a small array: images x classes)."""
        rows = self._rows["logits"][: self.n]
        return torch.from_numpy(np.array(rows)) if self.on_disk else rows.detach().cpu().float().clone()


def teacher_cache_mb(teacher: nn.Module, paths: list[str], sample: torch.Tensor, n: int, views: int) -> float:
    logits, feats = teacher_outputs(teacher, paths, sample, use_bf16=False)
    per_sample = (logits[0].numel() + sum(f[0].numel() for f in feats.values())) * 4
    return per_sample * n * views / 2**20


@contextlib.contextmanager
def teacher_code(label: str, what: str):
    """The teacher's own exception on training images (the teacher stage ran it only on the test
    and validation splits) as one line, not a traceback. The disk and edgedistill's own errors pass."""
    try:
        yield
    except (EdgeDistillError, OSError):
        raise
    except Exception as err:  # noqa: BLE001 - whatever the user's forward raises
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise InputError(f"{label}: the teacher failed on {what}: {type(err).__name__}: {message}",
                         hint="the error comes from the teacher's own code, which ran on the test and validation "
                              "images: fix or wrap its forward") from err
