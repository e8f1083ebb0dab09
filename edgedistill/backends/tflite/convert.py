"""PyTorch -> LiteRT (.tflite) with litert-torch, NHWC input/output for apps.

Apps hand LiteRT images as (N, H, W, C) buffers, so both models are wrapped with channel-last I/O.
Exports use a dynamic batch dimension (a batch-1 sample would specialise the graph to batch 1),
unless the model's family says it cannot (``Family.dynamic_batch``: the vision transformer, whose
reasons live with it in ``models/vit.py``); a fixed batch-1 file says what it runs, the manifest
records ``batch: 1`` and verification feeds it one image at a time.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from edgedistill.fsutil import atomic_path
from edgedistill.quantize.qat import batch_dim


def _nhwc_sample(sample_nchw: torch.Tensor) -> torch.Tensor:
    return sample_nchw.permute(0, 2, 3, 1).contiguous()


def _convert(module: nn.Module, sample_nchw: torch.Tensor, path: Path, quant_config=None,
             dynamic_batch: bool = True) -> Path:
    import litert_torch

    wrapped = litert_torch.to_channel_last_io(module, args=[0]).eval()
    # litert-torch logs a spurious "converted in training mode" warning for exported graphs.
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))
    if dynamic_batch:
        edge = litert_torch.convert(wrapped, (_nhwc_sample(sample_nchw),), quant_config=quant_config,
                                    dynamic_shapes=(({0: batch_dim()},),))
    else:
        edge = litert_torch.convert(wrapped, (_nhwc_sample(sample_nchw[:1]),), quant_config=quant_config)
    with atomic_path(path) as tmp:
        edge.export(str(tmp))
    return path


def export_tflite_fp32(model: nn.Module, sample_nchw: torch.Tensor, path: Path, dynamic_batch: bool = True) -> Path:
    return _convert(model.eval(), sample_nchw, path, dynamic_batch=dynamic_batch)


def export_tflite_int8(converted: torch.fx.GraphModule, quantizer, sample_nchw: torch.Tensor, path: Path,
                       dynamic_batch: bool = True) -> Path:
    """Lower the converted PT2E graph to a fully integer .tflite. ``quant_config`` is essential:
    without it litert-torch silently writes a float model with quantize/dequantize pairs."""
    from litert_torch.quantize.quant_config import QuantConfig

    return _convert(converted, sample_nchw, path, QuantConfig(pt2e_quantizer=quantizer), dynamic_batch)
