"""PyTorch -> ONNX through the dynamo exporter (opset 18, one file): fp32 from the float student,
simplified with onnxsim; int8 QDQ from the converted PT2E graph that ``model.tflite`` comes from.

onnxruntime's own post-training quantizer is not used for the int8 file: it cannot apply the bias
correction, and on a 96 px MBConv student its MinMax, Entropy and Percentile calibrations, and its
7-bit weights, agreed with the fp32 student on 88.8-90.4% of test images where the bias-corrected PT2E
graph's export agrees on 96.6% (``python scripts/bench_onnx_int8.py``).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from edgedistill.fsutil import atomic_path
from edgedistill.quantize.qat import batch_dim

OPSET = 18


def export_onnx_fp32(model: nn.Module, sample_nchw: torch.Tensor, path: Path) -> Path:
    import onnx
    import onnxsim

    simplified, ok = onnxsim.simplify(_exported(model.eval(), sample_nchw))
    if not ok:
        raise RuntimeError("onnxsim could not validate the simplified model")
    with atomic_path(path) as out:
        onnx.save(simplified, str(out))
    return path


def _exported(model, sample_nchw: torch.Tensor):
    """``model`` through the dynamo exporter with a dynamic batch, as an in-memory ONNX model."""
    import onnx

    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    # The exporter warns that torchvision's detection ops are not registered: irrelevant here.
    onnx_log.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = Path(tmp) / "raw.onnx"
            torch.onnx.export(model, (sample_nchw,), str(raw), dynamo=True, opset_version=OPSET,
                              external_data=False, input_names=["input"], output_names=["logits"],
                              dynamic_shapes=({0: batch_dim()},), verbose=False)
            return onnx.load(str(raw))
    finally:
        onnx_log.setLevel(level)


def export_onnx_int8(converted: torch.fx.GraphModule, sample_nchw: torch.Tensor, path: Path) -> Path:
    """The converted PT2E graph that ``model.tflite`` is lowered from, as an int8 QDQ model: the
    same scales, the same bias-corrected weights, one int8 model in both formats (see qdq.py for
    the rewrites that make the export a standard, portable QDQ file)."""
    import onnx

    from edgedistill.backends.onnx import qdq

    model = _exported(converted, sample_nchw)
    if qdq.integer_weights(model) == 0:
        raise RuntimeError("the exported graph has no quantized weights to fold")
    qdq.unsigned(model)
    onnx.checker.check_model(model)
    with atomic_path(path) as out:
        onnx.save(model, str(out))
    return path
