"""ONNX (.onnx): the float student (NCHW, simplified with onnxsim) and an int8 QDQ file exported
from the same converted PT2E graph as ``model.tflite`` (its scales and bias-corrected weights)."""

from __future__ import annotations

from pathlib import Path

from edgedistill.artifacts import ArtifactSpec
from edgedistill.backends.registry import Backend, BackendChecks, ExportInputs, register_backend

MODEL_FP32 = ArtifactSpec(
    name="model.onnx", backend="onnx", precision="fp32", layout="NCHW", source="float", reference="fp32",
    min_agreement=0.995,
)
MODEL_INT8 = ArtifactSpec(
    name="model_int8.onnx", backend="onnx", precision="int8", layout="NCHW", source="qat", reference="qat",
    min_agreement=0.99,  # vs the torch int8 graph it was exported from, as model.tflite
    quantization="the int8 graph model.tflite is lowered from (same scales and bias-corrected weights), as QDQ "
                 "with uint8 tensors (zero point + 128: the same values; onnxruntime's x86 kernels without VNNI "
                 "saturate int8 x int8)",
)


@register_backend
class OnnxBackend(Backend):
    name = "onnx"
    suffix = ".onnx"

    def artifacts(self) -> list[ArtifactSpec]:
        return [MODEL_FP32, MODEL_INT8]

    def export(self, spec: ArtifactSpec, inputs: ExportInputs, path: Path) -> None:
        from edgedistill.backends.onnx.convert import export_onnx_fp32, export_onnx_int8

        if spec.source == "qat":
            export_onnx_int8(inputs.converted, inputs.sample, path)
        else:
            export_onnx_fp32(inputs.student, inputs.sample, path)

    def load(self, path: Path, *, threads: int = 1):
        from edgedistill.backends.onnx.runtime import OnnxModel

        return OnnxModel(path, threads=threads)

    def check(self, precision, path, model, predict, labels, predictions, min_agreement) -> BackendChecks:
        if precision != "int8":
            return BackendChecks()
        qdq = model.quantized_node_count()
        out = BackendChecks(tensor_dtypes={"QuantizeLinear+DequantizeLinear nodes": qdq})
        if qdq == 0:
            out.problems.append("no QuantizeLinear/DequantizeLinear nodes: the model is not quantized")
        return out

    def quantization_evidence(self, model) -> tuple[bool, str]:
        qdq = model.quantized_node_count()
        return qdq > 0, (f"{qdq} QuantizeLinear/DequantizeLinear nodes" if qdq else
                         "no QuantizeLinear/DequantizeLinear nodes: the model is not quantized")
