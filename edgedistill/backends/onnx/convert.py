"""PyTorch -> ONNX: fp32 through the dynamo exporter (opset 18, one file) simplified with onnxsim,
and int8 QDQ through onnxruntime's static quantizer calibrated on representative data.

ONNX Runtime recalibrates activation ranges itself (QAT scales do not carry over), so the int8 ONNX
starts from the fp32 student; the manifest says so.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgedistill.fsutil import atomic_path
from edgedistill.quantize.qat import batch_dim

OPSET = 18


def export_onnx_fp32(model: nn.Module, sample_nchw: torch.Tensor, path: Path) -> Path:
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    # The exporter warns that torchvision's detection ops are not registered: irrelevant here.
    onnx_log.setLevel(logging.ERROR)
    try:
        _export_and_simplify(model, sample_nchw, path)
    finally:
        onnx_log.setLevel(level)
    return path


def _export_and_simplify(model: nn.Module, sample_nchw: torch.Tensor, path: Path) -> None:
    import onnx
    import onnxsim

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = Path(tmp) / "raw.onnx"
        torch.onnx.export(
            model.eval(),
            (sample_nchw,),
            str(raw),
            dynamo=True,
            opset_version=OPSET,
            external_data=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_shapes=({0: batch_dim()},),
            verbose=False,
        )
        simplified, ok = onnxsim.simplify(onnx.load(str(raw)))
        if not ok:
            raise RuntimeError("onnxsim could not validate the simplified model")
        with atomic_path(path) as out:
            onnx.save(simplified, str(out))


class _Reader:
    """onnxruntime CalibrationDataReader over a float NCHW array, in small batches."""

    def __init__(self, name: str, x: np.ndarray, batch: int = 32) -> None:
        self._batches = iter([{name: x[i : i + batch]} for i in range(0, len(x), batch)])

    def get_next(self):
        return next(self._batches, None)

    def rewind(self):  # pragma: no cover - required by the interface, unused by MinMax
        pass


def quantize_onnx_int8(fp32_path: Path, calibration_nchw: np.ndarray, path: Path) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        with atomic_path(path) as out:
            quantize_static(
                str(pre),
                str(out),
                _Reader("input", calibration_nchw.astype(np.float32)),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
    return path
