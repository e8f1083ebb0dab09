"""LiteRT (.tflite): the shipped fully integer model from the QAT graph, and an fp32 file beside it.

Both take NHWC input (what apps hand LiteRT). The int8 file is also run on LiteRT's builtin kernels
without XNNPACK, since some devices have no XNNPACK; it must agree with the XNNPACK run.
"""

from __future__ import annotations

from pathlib import Path

from edgedistill.artifacts import ArtifactSpec
from edgedistill.backends.registry import Backend, BackendChecks, ExportInputs, register_backend

MODEL = ArtifactSpec(
    name="model.tflite", backend="tflite", precision="int8", layout="NHWC", source="qat", reference="qat",
    min_agreement=0.99,  # vs the QAT torch graph it was lowered from
    quantization="PT2E quantization-aware fine-tuning (teacher soft targets), per-channel symmetric int8 weights, "
                 "int8 activations, int32 biases",
    main=True,
)
MODEL_FP32 = ArtifactSpec(
    name="model_fp32.tflite", backend="tflite", precision="fp32", layout="NHWC", source="float", reference="fp32",
    min_agreement=0.995,
)


@register_backend
class TFLiteBackend(Backend):
    name = "tflite"
    suffix = ".tflite"

    def artifacts(self) -> list[ArtifactSpec]:
        return [MODEL, MODEL_FP32]

    def export(self, spec: ArtifactSpec, inputs: ExportInputs, path: Path) -> None:
        from edgedistill.backends.tflite.convert import export_tflite_fp32, export_tflite_int8

        if spec.source == "qat":
            export_tflite_int8(inputs.converted, inputs.quantizer, inputs.sample, path,
                               dynamic_batch=inputs.dynamic_batch)
        else:
            export_tflite_fp32(inputs.student, inputs.sample, path, dynamic_batch=inputs.dynamic_batch)

    def load(self, path: Path, *, threads: int = 1, builtin_only: bool = False):
        from edgedistill.backends.tflite.runtime import TFLiteModel

        return TFLiteModel(path, threads=threads, builtin_only=builtin_only)

    def check(self, precision, path, model, predict, labels, predictions, min_agreement) -> BackendChecks:
        out = BackendChecks(tensor_dtypes=model.tensor_dtypes())
        if precision != "int8":
            return out
        out.problems += model.integer_problems()
        try:
            builtin_logits = predict(self.load(path, builtin_only=True))
        except Exception as exc:  # a kernel missing or rejecting the model: report, don't crash
            out.problems.append(f"does not run on LiteRT builtin kernels without XNNPACK: {exc}")
            return out
        builtin = builtin_logits.argmax(1)
        out.builtin_kernels_accuracy = float((builtin == labels).mean())
        agree = float((builtin == predictions).mean())
        if agree < min_agreement:
            out.problems.append(f"builtin kernels agree with XNNPACK on only {agree:.4f} of test images")
        return out

    def quantization_evidence(self, model) -> tuple[bool, str]:
        problems = model.integer_problems()
        if problems:
            return False, "; ".join(problems)
        dtypes = model.tensor_dtypes()
        return True, f"fully integer ({', '.join(f'{v} {k}' for k, v in sorted(dtypes.items()))} tensors)"

    def bench_delegate(self, target_delegate: str) -> str:
        return target_delegate
