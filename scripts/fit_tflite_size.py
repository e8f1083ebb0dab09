"""Fit the size of a fully integer .tflite from a model's structure (the selector's size predictor).

    python scripts/fit_tflite_size.py

Exports six residual students through the build's own QAT -> litert-torch path (one QAT epoch, so
the quantization parameters are real) and least-squares fits
``bytes = a * params + b * quantized output channels + c * weight layers + d``.
Measured 2026-11-30 (litert-torch 0.10.0): a=1.000, b=26.0, c=826, d=1577, exact to a few bytes;
these are the constants in edgedistill/select/candidates.py.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")


def main() -> int:
    import torch

    from edgedistill.data.digits import load_digits_dataset
    from edgedistill.export.tflite import export_tflite_int8
    from edgedistill.models import create_model
    from edgedistill.models.resnet import ResNetSpec
    from edgedistill.quantize.qat import QATConfig, qat_finetune
    from edgedistill.select.candidates import size_features

    data = load_digits_dataset()
    x = torch.from_numpy(data.inputs("train"))
    specs = [((4, 8, 16), (1, 1, 1)), ((8, 16, 32), (1, 1, 1)), ((8, 16, 32), (2, 2, 2)),
             ((12, 24, 48), (1, 1, 1)), ((16, 32, 64), (2, 2, 2)), ((8, 12, 24), (2, 2, 2))]
    rows, sizes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for widths, depths in specs:
            model = create_model(ResNetSpec(1, 10, widths, depths))
            feats = size_features(model)
            converted, quantizer, _ = qat_finetune(model, data, None, QATConfig(epochs=1))
            path = Path(tmp) / "m.tflite"
            export_tflite_int8(converted, quantizer, x[:4], path)
            rows.append([feats["params"], feats["channels"], feats["layers"], 1.0])
            sizes.append(path.stat().st_size)
            print(f"w{widths} d{depths}: {feats} -> {sizes[-1]} bytes", file=sys.stderr)
    coef, *_ = np.linalg.lstsq(np.asarray(rows, float), np.asarray(sizes, float), rcond=None)
    pred = np.asarray(rows, float) @ coef
    print(f"bytes = {coef[0]:.3f} * params + {coef[1]:.1f} * channels + {coef[2]:.0f} * layers + {coef[3]:.0f}")
    print(f"max abs error: {np.abs(pred - sizes).max():.0f} bytes over {len(sizes)} models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
