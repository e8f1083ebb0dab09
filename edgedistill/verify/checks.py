"""Verify each exported artifact against the torch model it came from, before anything ships.

Checks: accuracy on the test split, top-1 agreement and logit error against the torch reference,
tensor dtypes of the int8 models (fully integer: int8 activations and weights, int32 biases, int8
input and output), and that the int8 .tflite runs on LiteRT's builtin kernels without XNNPACK.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgedistill.data.dataset import ImageDataset
from edgedistill.errors import VerificationError
from edgedistill.quality import chance_check
from edgedistill.verify.runtime import OnnxModel, TFLiteModel, from_model_output, to_model_input


@dataclass(frozen=True)
class VerifyThresholds:
    min_agreement_int8_tflite: float = 0.99  # vs the QAT torch graph it was lowered from
    min_agreement_fp32: float = 0.995  # vs the fp32 torch student
    min_agreement_int8_onnx: float = 0.97  # post-training QDQ vs the fp32 torch student


@dataclass
class ArtifactReport:
    file: str
    format: str  # "tflite" | "onnx"
    precision: str  # "int8" | "fp32"
    reference: str  # which torch model the agreement is measured against
    accuracy: float
    reference_accuracy: float
    agreement: float
    max_abs_logit_diff: float
    input: dict
    output: dict
    tensor_dtypes: dict = field(default_factory=dict)
    builtin_kernels_accuracy: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return asdict(self)


def _predict(model, data: ImageDataset, split: str) -> np.ndarray:
    spec = model.input_spec
    raw = getattr(data, split).images
    return from_model_output(model.run(to_model_input(raw, data.preprocessing, spec)), model.output_spec)


def verify_artifact(
    path: Path,
    precision: str,
    data: ImageDataset,
    reference_logits: np.ndarray,
    reference: str,
    min_agreement: float,
) -> ArtifactReport:
    """Compare ``path`` on the test split with ``reference_logits`` (the torch model's)."""
    path = Path(path)
    labels = data.test.labels
    model = TFLiteModel(path) if path.suffix == ".tflite" else OnnxModel(path)
    logits = _predict(model, data, "test")
    pred, ref_pred = logits.argmax(1), reference_logits.argmax(1)
    report = ArtifactReport(
        file=path.name,
        format=path.suffix.lstrip("."),
        precision=precision,
        reference=reference,
        accuracy=float((pred == labels).mean()),
        reference_accuracy=float((ref_pred == labels).mean()),
        agreement=float((pred == ref_pred).mean()),
        max_abs_logit_diff=float(np.abs(logits - reference_logits).max()),
        input=model.input_spec.to_dict(),
        output=model.output_spec.to_dict(),
    )
    if report.agreement < min_agreement:
        report.problems.append(
            f"top-1 agreement with {reference} is {report.agreement:.4f} < {min_agreement}"
            + _weak_reference_note(report.reference_accuracy, labels)
        )
    if isinstance(model, TFLiteModel):
        report.tensor_dtypes = model.tensor_dtypes()
        if precision == "int8":
            report.problems += model.integer_problems()
            builtin = TFLiteModel(path, builtin_only=True)
            try:
                b_logits = _predict(builtin, data, "test")
            except Exception as exc:  # a kernel missing or rejecting the model: report, don't crash
                report.problems.append(f"does not run on LiteRT builtin kernels without XNNPACK: {exc}")
            else:
                report.builtin_kernels_accuracy = float((b_logits.argmax(1) == labels).mean())
                b_agree = float((b_logits.argmax(1) == pred).mean())
                if b_agree < min_agreement:
                    report.problems.append(
                        f"builtin kernels agree with XNNPACK on only {b_agree:.4f} of test images"
                    )
    elif precision == "int8":
        qdq = model.quantized_node_count()
        report.tensor_dtypes = {"QuantizeLinear+DequantizeLinear nodes": qdq}
        if qdq == 0:
            report.problems.append("no QuantizeLinear/DequantizeLinear nodes: the model is not quantized")
    return report


def _weak_reference_note(reference_accuracy: float, labels: np.ndarray) -> str:
    """A model barely above chance has tiny logit margins, so rounding to int8 (or any numeric
    difference) flips many of its top-1 answers: that disagreement is about the model, not the
    exporter, and the message says so."""
    check = chance_check(reference_accuracy, labels)
    if not check.weak:
        return ""
    where = "at chance" if check.near_chance else "weak"
    return (f" (the reference itself is {where}: {100 * check.accuracy:.1f}% test accuracy against "
            f"{100 * check.chance:.1f}% for always answering the commonest class, so its top-1 answers sit on "
            "small logit margins that any rounding flips; this points at the teacher or the training "
            "(accuracy, epochs), not at the exporter)")


def require_all_passed(reports: list[ArtifactReport]) -> None:
    failed = [r for r in reports if not r.passed]
    if failed:
        lines = "; ".join(f"{r.file}: {', '.join(r.problems)}" for r in failed)
        raise VerificationError(
            f"verification failed, nothing was written to the bundle: {lines}",
            hint="the run directory keeps the artifacts for inspection",
        )
