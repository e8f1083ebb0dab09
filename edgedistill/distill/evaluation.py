"""Evaluating a model: logits and accuracy on tensors, or on a dataset's split read a block at a
time (the split may be on disk or at another resolution; no float copy of it is made)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgedistill.data.dataset import ImageDataset


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    return float((predict_logits(model, x, batch_size).argmax(1) == y.cpu()).float().mean())


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    was_training = model.training
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device  # a parameterless model runs on the CPU
    try:
        outs = [model(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(outs)


def accuracy(logits: np.ndarray | torch.Tensor, labels: np.ndarray) -> float:
    pred = np.asarray(logits).argmax(1)
    return float((pred == np.asarray(labels)).mean())


def predict_split(model: nn.Module, data: ImageDataset, split: str, batch_size: int | None = None) -> torch.Tensor:
    """Logits on a whole split, read and converted a block at a time (the split may be on disk)."""
    batch_size = batch_size or data.block_rows()
    outs = [predict_logits(model, torch.from_numpy(x), batch_size) for _, x in data.batches(split, batch_size)]
    return torch.cat(outs) if outs else torch.empty(0, data.num_classes)


def evaluate_split(model: nn.Module, data: ImageDataset, split: str, batch_size: int | None = None) -> float:
    labels = torch.from_numpy(getattr(data, split).labels)
    return float((predict_split(model, data, split, batch_size).argmax(1) == labels).float().mean())


