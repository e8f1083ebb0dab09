"""Tiny real models for the bench tests, built once per test process.

A conv + linear net on 1x8x8 inputs (the digits shape): small enough to convert in seconds, real
enough that LiteRT and onnxruntime run it as they would a student.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TinyModels:
    tflite: Path  # exported with a fixed batch of 2 (the brief's sample call)
    tflite_dynamic: Path  # dynamic batch dim
    onnx: Path  # fixed batch 2
    onnx_dynamic: Path  # symbolic batch dim


@functools.lru_cache(maxsize=1)
def tiny_models() -> TinyModels:
    import litert_torch
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.head = torch.nn.Linear(4, 10)

        def forward(self, x):
            return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))

    out = Path(tempfile.mkdtemp(prefix="edgedistill-bench-models-"))
    atexit.register(shutil.rmtree, out, True)
    torch.manual_seed(0)
    model = Tiny().eval()
    sample = (torch.randn(2, 1, 8, 8),)
    batch = torch.export.Dim("batch", min=1, max=64)
    # The converters print progress on stdout; keep stdout for what scripts print.
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        litert_torch.convert(model, sample).export(str(out / "tiny.tflite"))
        litert_torch.convert(model, sample, dynamic_shapes=({0: batch},)).export(str(out / "tiny_dyn.tflite"))
        torch.onnx.export(model, sample, str(out / "tiny.onnx"), dynamo=True, opset_version=18,
                          external_data=False, verbose=False)
        torch.onnx.export(model, sample, str(out / "tiny_dyn.onnx"), dynamo=True, opset_version=18,
                          external_data=False, verbose=False, dynamic_shapes=({0: batch},))
    return TinyModels(out / "tiny.tflite", out / "tiny_dyn.tflite", out / "tiny.onnx", out / "tiny_dyn.onnx")
