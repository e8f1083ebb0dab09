"""Verify each exported artifact against the torch model it came from, before anything ships.

Checks: accuracy on the test split, top-1 agreement and logit error against the torch reference,
and whatever the artifact's backend checks besides (fully integer dtypes of an int8 .tflite and its
run on LiteRT's builtin kernels without XNNPACK; QDQ nodes of an int8 .onnx). The report keeps the
artifact's predictions, so later stages (the bundle's verification sample, the report's confusion
matrix) never run the model again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgedistill.artifacts import Artifact
from edgedistill.backends import backend_for
from edgedistill.backends.io import from_model_output, to_model_input
from edgedistill.data.dataset import ImageDataset
from edgedistill.errors import VerificationError
from edgedistill.quality import chance_check


@dataclass
class ArtifactReport:
    file: str
    format: str  # the backend: "tflite" | "onnx"
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
    # Top-1 answers on the test split, in order; kept in memory, not in the run directory's JSON.
    predictions: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("predictions")
        return d


def _predict(model, data: ImageDataset, split: str) -> np.ndarray:
    """The model file's outputs on a split, converted and run a block of images at a time."""
    raw, rows = getattr(data, split).images, data.block_rows()
    outs = [from_model_output(model.run(to_model_input(raw[i : i + rows], data.preprocessing, model.input_spec)),
                              model.output_spec) for i in range(0, len(raw), rows)]
    return np.concatenate(outs) if outs else np.empty((0, data.num_classes), dtype=np.float32)


def verify_artifact(artifact: Artifact, data: ImageDataset, reference_logits: np.ndarray) -> ArtifactReport:
    """Verify ``artifact`` against its reference's logits on the test split, with its own threshold."""
    spec = artifact.spec
    report = verify_file(artifact.path, spec.precision, data, reference_logits, spec.reference_name,
                         spec.min_agreement)
    report.file = spec.name
    return report


def verify_file(
    path: Path,
    precision: str,
    data: ImageDataset,
    reference_logits: np.ndarray,
    reference: str,
    min_agreement: float,
) -> ArtifactReport:
    """Compare the model file ``path`` on the test split with ``reference_logits`` (the torch model's)."""
    path = Path(path)
    labels = data.test.labels
    backend = backend_for(path)
    model = backend.load(path)
    logits = _predict(model, data, "test")
    pred, ref_pred = logits.argmax(1), reference_logits.argmax(1)
    report = ArtifactReport(
        file=path.name,
        format=backend.name,
        precision=precision,
        reference=reference,
        accuracy=float((pred == labels).mean()),
        reference_accuracy=float((ref_pred == labels).mean()),
        agreement=float((pred == ref_pred).mean()),
        max_abs_logit_diff=float(np.abs(logits - reference_logits).max()),
        input=model.input_spec.to_dict(),
        output=model.output_spec.to_dict(),
        predictions=pred,
    )
    if report.agreement < min_agreement:
        report.problems.append(
            f"top-1 agreement with {reference} is {report.agreement:.4f} < {min_agreement}"
            + _weak_reference_note(report.reference_accuracy, labels)
        )
    extra = backend.check(precision, path, model, lambda m: _predict(m, data, "test"), labels, pred, min_agreement)
    report.tensor_dtypes = extra.tensor_dtypes
    report.builtin_kernels_accuracy = extra.builtin_kernels_accuracy
    report.problems += extra.problems
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
