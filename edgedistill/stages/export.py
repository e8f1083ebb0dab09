"""Stage 6, export: every artifact made from the float student (``source="float"``: the fp32 .tflite
and .onnx; the int8 files come from the quantize stage's graph); kept in the run directory with the
float student's test logits, their reference."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgedistill.artifacts import Artifact
from edgedistill.backends import ExportInputs, artifact_specs, export_artifacts
from edgedistill.distill.evaluation import predict_split
from edgedistill.stages.context import BuildContext, versions
from edgedistill.stages.student import weights_digest

REFERENCE_LOGITS = "reference_test_logits.npy"


@dataclass
class ExportResult:
    dir: str = ""  # the stage folder as it is now; not stored

    def artifacts(self) -> list[Artifact]:
        return [spec.at(Path(self.dir) / spec.name) for spec in artifact_specs("float")]

    def reference_logits(self) -> np.ndarray:
        return np.load(Path(self.dir) / REFERENCE_LOGITS)

    def stored(self) -> dict:
        return {"artifacts": [a.spec.name for a in self.artifacts()]}


def export_stage(ctx: BuildContext, tag: str, student_model: torch.nn.Module, base_inputs: dict) -> ExportResult:
    from edgedistill.models import family_of

    data = ctx.data
    stage = ctx.rd.stage(f"{tag}/export", {**base_inputs, "student_weights": weights_digest(ctx.rd, tag),
                                           "versions": versions()})
    specs = artifact_specs("float")
    stored = stage.load(files=(*(s.name for s in specs), REFERENCE_LOGITS))
    if stored is not None:
        return ExportResult(dir=str(stage.dir))
    stage.begin()
    np.save(stage.dir / REFERENCE_LOGITS, predict_split(student_model.eval(), data, "test").numpy())
    inputs = ExportInputs(sample=torch.from_numpy(data.batch("train", slice(0, 4))),
                          dynamic_batch=family_of(student_model.spec).dynamic_batch, student=student_model)
    export_artifacts(specs, inputs, stage.dir)
    result = ExportResult(dir=str(stage.dir))
    stage.save(result.stored())
    return result
