#!/usr/bin/env python3
"""Which int8 ONNX route keeps a trained student's answers (edgedistill/backends/onnx/convert.py).

    python scripts/bench_onnx_int8.py --student RUN_DIR/STUDENT/distill --data DATA [--json]

Loads a build's distilled student (its stage folder: ``result.json`` and ``student.safetensors``)
and the data it was trained on, and makes int8 ONNX files from it:

- onnxruntime's ``quantize_static`` (QDQ, per-channel weights) from the fp32 export, calibrated on
  32 training images per class with MinMax, Entropy and Percentile (99.99), and MinMax with 7-bit
  weights (``reduce_range``);
- the PT2E post-training graph (clamp-fusing quantizer, bias-corrected on 256 training images, as
  the build's post-training candidate) exported as the build does (``export_onnx_int8``: uint8
  tensors), and the same export left in int8.

For each it prints top-1 agreement with the fp32 student and test accuracy as onnxruntime runs it
(all graph optimizations: fused integer kernels), and agreement between that run and the same file
run with no optimizations (the QDQ arithmetic as written). On x86 CPUs without AVX-512 VNNI that
last figure shows the int8 x int8 saturation qdq.py describes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def _session(path: Path, optimized: bool):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    if not optimized:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _logits(path: Path, x, optimized: bool = True):
    import numpy as np

    s = _session(path, optimized)
    return np.concatenate([s.run(None, {"input": x[i : i + 64]})[0] for i in range(0, len(x), 64)])


def _row(path: Path, test, labels, fp32_top1) -> dict:
    fused, plain = _logits(path, test).argmax(1), _logits(path, test, optimized=False).argmax(1)
    return {"agreement_fp32": float((fused == fp32_top1).mean()), "accuracy": float((fused == labels).mean()),
            "fused_vs_unfused": float((fused == plain).mean())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", type=Path, required=True, help="a build's <student>/distill stage folder")
    ap.add_argument("--data", type=Path, required=True, help="the data the build was given (--data)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from edgedistill.streams import stdout_to_stderr

    with stdout_to_stderr(args.json):
        rows = _measure(args)
        if rows is None:
            return 2
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'route':<40} {'agree fp32':>10} {'accuracy':>9} {'fused=unfused':>14}")
        for name, r in rows.items():
            print(f"{name:<40} {r['agreement_fp32']:>10.3f} {r['accuracy']:>9.3f} {r['fused_vs_unfused']:>14.3f}")
    return 0


def _measure(args) -> dict | None:
    import numpy as np
    import onnx
    import torch
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from safetensors.torch import load_file

    from edgedistill.backends.onnx.convert import export_onnx_fp32, export_onnx_int8
    from edgedistill.data.load import load_dataset
    from edgedistill.models import create_model, spec_from_dict
    from edgedistill.quantize import litert_patch
    from edgedistill.quantize.bias_correction import correct_biases
    from edgedistill.quantize.qat import BIAS_CORRECTION_IMAGES, make_quantizer, post_training_quantize

    result_file, weights = args.student / "result.json", args.student / "student.safetensors"
    for f in (result_file, weights):
        if not f.is_file():
            print(f"error: {f} does not exist (give a build's <student>/distill folder)", file=sys.stderr)
            return None
    litert_patch.install()
    model = create_model(spec_from_dict(json.loads(result_file.read_text())["result"]["spec"]))
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    data = load_dataset(args.data)
    test, labels = data.batch("test", slice(None)), data.test.labels
    rng = np.random.default_rng(0)
    per_class = [rng.choice(np.flatnonzero(data.train.labels == c), size=min(32, int((data.train.labels == c).sum())),
                            replace=False) for c in range(data.num_classes)]
    calib = data.batch("train", np.sort(np.concatenate(per_class))).astype(np.float32)
    tmp = Path(tempfile.mkdtemp(prefix="bench_onnx_int8_"))
    fp32 = export_onnx_fp32(model, torch.from_numpy(calib[:4]), tmp / "fp32.onnx")
    fp32_top1 = _logits(fp32, test).argmax(1)
    rows = {"fp32 (onnxruntime)": {"agreement_fp32": 1.0, "accuracy": float((fp32_top1 == labels).mean()),
                                   "fused_vs_unfused": float((_logits(fp32, test, False).argmax(1) == fp32_top1).mean())}}
    pre = tmp / "pre.onnx"
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    routes = {"onnxruntime MinMax": dict(calibrate_method=CalibrationMethod.MinMax),
              "onnxruntime Entropy": dict(calibrate_method=CalibrationMethod.Entropy),
              "onnxruntime Percentile 99.99": dict(calibrate_method=CalibrationMethod.Percentile,
                                                   extra_options={"CalibPercentile": 99.99}),
              "onnxruntime MinMax, 7-bit weights": dict(calibrate_method=CalibrationMethod.MinMax, reduce_range=True)}
    for name, kw in routes.items():
        out = tmp / f"{len(rows)}.onnx"
        batches = iter([{"input": calib[i : i + 32]} for i in range(0, len(calib), 32)])
        reader = type("Reader", (), {"get_next": lambda self: next(batches, None), "rewind": lambda self: None})()
        quantize_static(str(pre), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, **kw)
        rows[name] = _row(out, test, labels, fp32_top1)
    sample = torch.from_numpy(data.batch("train", slice(0, BIAS_CORRECTION_IMAGES)))
    batches = [sample[i : i + 16] for i in range(0, len(sample), 16)]
    converted = post_training_quantize(model, sample[:2], make_quantizer(qat=False), batches)
    correct_biases(converted, batches)
    export_onnx_int8(converted, sample[:4], tmp / "pt2e_uint8.onnx")
    rows["PT2E, bias-corrected (uint8, as shipped)"] = _row(tmp / "pt2e_uint8.onnx", test, labels, fp32_top1)
    signed = onnx.load(str(tmp / "pt2e_uint8.onnx"))
    _signed(signed)
    onnx.save(signed, str(tmp / "pt2e_int8.onnx"))
    rows["PT2E, bias-corrected, left in int8"] = _row(tmp / "pt2e_int8.onnx", test, labels, fp32_top1)
    return rows


def _signed(model) -> None:
    """Undo qdq.unsigned (uint8 - 128, same scale): the int8 file the exporter would have written."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    for init in model.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype == np.uint8:
            init.CopyFrom(numpy_helper.from_array((a.astype(np.int16) - 128).astype(np.int8), init.name))
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].t.data_type == onnx.TensorProto.UINT8:
            a = numpy_helper.to_array(node.attribute[0].t)
            node.attribute[0].t.CopyFrom(numpy_helper.from_array((a.astype(np.int16) - 128).astype(np.int8),
                                                                 node.attribute[0].t.name))
    del model.graph.value_info[:]
    model.CopyFrom(onnx.shape_inference.infer_shapes(model))


if __name__ == "__main__":
    raise SystemExit(main())
