"""Fit the size of a fully integer .tflite from a model's structure (the selector's size predictor).

    python scripts/fit_tflite_size.py

Exports six residual and four inverted-residual students through the build's own QAT ->
litert-torch path (one QAT epoch, so the quantization parameters are real) and least-squares fits
``bytes = a * params + b * quantized output channels + c * weight layers + d``.
Measured 2026-11-30 (litert-torch 0.10.0): a=1.001, b=25.8, c=866, d=135, within 376 bytes on all
ten; these (a rounded to 1) are the constants in edgedistill/select/candidates.py, and the script
prints each model's error under the shipped constants.
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
    from edgedistill.backends.tflite.convert import export_tflite_int8
    from edgedistill.models import create_model
    from edgedistill.models.mobilenet import MobileNetSpec
    from edgedistill.models.resnet import ResNetSpec
    from edgedistill.quantize.qat import QATConfig, qat_finetune
    from edgedistill.select.candidates import size_features

    data = load_digits_dataset()
    x = torch.from_numpy(data.batch("train", slice(None)))
    specs = [ResNetSpec(1, 10, w, d) for w, d in [
        ((4, 8, 16), (1, 1, 1)), ((8, 16, 32), (1, 1, 1)), ((8, 16, 32), (2, 2, 2)),
        ((12, 24, 48), (1, 1, 1)), ((16, 32, 64), (2, 2, 2)), ((8, 12, 24), (2, 2, 2))]]
    specs += [MobileNetSpec(1, 10, w, d, e) for w, d, e in [
        ((8, 16, 32), (1, 1, 1), 4), ((16, 32, 64), (1, 1, 1), 4), ((8, 16, 32), (2, 2, 2), 2),
        ((12, 24, 48), (2, 2, 2), 6)]]
    rows, sizes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            model = create_model(spec)
            feats = size_features(model)
            converted, quantizer, _ = qat_finetune(model, data, None, QATConfig(epochs=1))
            path = Path(tmp) / "m.tflite"
            export_tflite_int8(converted, quantizer, x[:4], path)
            rows.append([feats["params"], feats["channels"], feats["layers"], 1.0])
            sizes.append(path.stat().st_size)
            print(f"{spec.describe()}: {feats} -> {sizes[-1]} bytes", file=sys.stderr)
    coef, *_ = np.linalg.lstsq(np.asarray(rows, float), np.asarray(sizes, float), rcond=None)
    pred = np.asarray(rows, float) @ coef
    print(f"bytes = {coef[0]:.3f} * params + {coef[1]:.1f} * channels + {coef[2]:.0f} * layers + {coef[3]:.0f}")
    print(f"max abs error: {np.abs(pred - sizes).max():.0f} bytes over {len(sizes)} models")
    from edgedistill.select.candidates import (TFLITE_BYTES_FIXED, TFLITE_BYTES_PER_CHANNEL,
                                               TFLITE_BYTES_PER_LAYER)

    shipped = np.asarray(rows, float) @ np.array([1.0, TFLITE_BYTES_PER_CHANNEL, TFLITE_BYTES_PER_LAYER,
                                                  TFLITE_BYTES_FIXED])
    for spec, size, p in zip(specs, sizes, shipped):
        print(f"  {spec.describe():32s} {size:8d} bytes, shipped constants predict {p:8.0f} ({p / size - 1:+.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
