"""Stage 6, export: every artifact made from the float student (``source="float"``: fp32 .tflite,
fp32 .onnx, and the int8 .onnx that onnxruntime quantizes from it on a class-balanced subset of the
training split, see calibration/README.md); kept in the run directory with the float student's test
logits, their reference."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgedistill.artifacts import Artifact
from edgedistill.backends import ExportInputs, artifact_specs, export_artifacts
from edgedistill.data.dataset import ImageDataset
from edgedistill.distill.evaluation import predict_split
from edgedistill.stages.context import BuildContext, versions
from edgedistill.stages.student import weights_digest

REFERENCE_LOGITS = "reference_test_logits.npy"
CALIBRATION_METHOD = "onnxruntime quantize_static MinMax, QDQ, per-channel"


@dataclass
class CalibrationInfo:
    """The representative data of post-training quantization."""

    split: str
    per_class: int
    seed: int
    count: int
    method: str


@dataclass
class ExportResult:
    calibration: CalibrationInfo
    dir: str = ""  # the stage folder as it is now; not stored

    def artifacts(self) -> list[Artifact]:
        return [spec.at(Path(self.dir) / spec.name) for spec in artifact_specs("float")]

    def reference_logits(self) -> np.ndarray:
        return np.load(Path(self.dir) / REFERENCE_LOGITS)

    def stored(self) -> dict:
        return {"calibration": dataclasses.asdict(self.calibration)}


def calibration_subset(data: ImageDataset, per_class: int, seed: int) -> np.ndarray:
    """A class-balanced representative subset of the training split (see calibration/README.md)."""
    rng = np.random.default_rng(seed)
    idx = []
    for cls in range(data.num_classes):
        members = np.flatnonzero(data.train.labels == cls)
        idx.extend(rng.choice(members, size=min(per_class, len(members)), replace=False))
    return np.sort(np.asarray(idx, dtype=np.int64))


def export_stage(ctx: BuildContext, tag: str, student_model: torch.nn.Module, base_inputs: dict) -> ExportResult:
    from edgedistill.models import family_of

    cfg, data = ctx.cfg, ctx.data
    stage = ctx.rd.stage(f"{tag}/export", {**base_inputs, "student_weights": weights_digest(ctx.rd, tag),
                                           "calibration_per_class": cfg.calibration_per_class,
                                           "versions": versions()})
    specs = artifact_specs("float")
    stored = stage.load(files=(*(s.name for s in specs), REFERENCE_LOGITS))
    if stored is not None:
        try:
            return ExportResult(CalibrationInfo(**stored["calibration"]), dir=str(stage.dir))
        except (TypeError, KeyError):
            pass  # a result of another version: export again
    stage.begin()
    np.save(stage.dir / REFERENCE_LOGITS, predict_split(student_model.eval(), data, "test").numpy())
    calib_idx = calibration_subset(data, cfg.calibration_per_class, cfg.seed)
    inputs = ExportInputs(sample=torch.from_numpy(data.batch("train", slice(0, 4))),
                          dynamic_batch=family_of(student_model.spec).dynamic_batch,
                          student=student_model, calibration=data.batch("train", calib_idx))
    export_artifacts(specs, inputs, stage.dir)
    result = ExportResult(CalibrationInfo(split="train", per_class=cfg.calibration_per_class, seed=cfg.seed,
                                          count=int(len(calib_idx)), method=CALIBRATION_METHOD), dir=str(stage.dir))
    stage.save(result.stored())
    return result
