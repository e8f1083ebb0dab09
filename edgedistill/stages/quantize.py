"""Stage 5, quantize: quantization-aware fine-tuning of the distilled student, supervised by the
teacher, and every artifact made from the int8 graph that ships (``source="qat"``: the fully
integer ``model.tflite`` and ``model_int8.onnx``); kept in the run directory with the QAT graph's test logits, its reference."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgedistill.artifacts import Artifact
from edgedistill.backends import ExportInputs, artifact_specs, export_artifacts
from edgedistill.distill.evaluation import predict_split
from edgedistill.quantize.qat import QATConfig
from edgedistill.stages.context import BuildContext, versions
from edgedistill.stages.student import weights_digest

REFERENCE_LOGITS = "reference_test_logits.npy"
CALIBRATION_METHOD = ("a seeded random sample of training images: histogram observers set the post-training graph's "
                      "activation ranges, QAT learns the fine-tuned graph's; both graphs are bias-corrected on it")


@dataclass
class QuantizeResult:
    losses: list[float]
    val_acc: float
    test_acc: float
    seconds: float
    config: QATConfig  # what it ran with
    # BiasCorrection.to_dict() (no default: a result stored before bias correction is quantized again)
    bias_correction: dict
    val_acc_before: float  # the int8 graph's without fine-tuning
    val_acc_fine_tuned: float  # and with it (val_acc: the shipped graph's)
    fine_tuned_kept: bool  # False: the graph before fine-tuning was clearly better on val, and ships
    loss_used: str = ""  # the terms of the build's loss QAT trained with
    loss_dropped: dict = field(default_factory=dict)  # term -> why QAT could not use it
    dir: str = ""  # the stage folder as it is now (run directories move); not stored

    def artifacts(self) -> list[Artifact]:
        return [spec.at(Path(self.dir) / spec.name) for spec in artifact_specs("qat")]

    def reference_logits(self) -> np.ndarray:
        return np.load(Path(self.dir) / REFERENCE_LOGITS)

    def calibration(self) -> dict:
        """The representative data both int8 files' graph was calibrated and bias-corrected on."""
        return {"split": "train", "count": int(self.bias_correction.get("images", 0)), "seed": self.config.seed,
                "method": CALIBRATION_METHOD}

    def stored(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("dir")
        return d

    @classmethod
    def from_stored(cls, d: dict, folder: Path) -> "QuantizeResult":
        return cls(**{**d, "config": QATConfig(**d["config"]), "dir": str(folder)})


def qat_config(cfg) -> QATConfig:
    """What QAT runs with, from the build's config (``--no-sync-batchnorm`` reaches it too)."""
    return QATConfig(epochs=cfg.qat_epochs, seed=cfg.seed, sync_batchnorm=cfg.sync_batchnorm)


def quantize_stage(ctx: BuildContext, tag: str, student_model: torch.nn.Module, base_inputs: dict) -> QuantizeResult:
    from edgedistill.models import family_of
    from edgedistill.quantize.qat import BIAS_CORRECTION_IMAGES, qat_finetune

    cfg, data, weights = ctx.cfg, ctx.data, ctx.weights
    qcfg = qat_config(cfg)
    stage = ctx.rd.stage(f"{tag}/quantize", {**base_inputs, "student_weights": weights_digest(ctx.rd, tag),
                                             "qat": dataclasses.asdict(qcfg), "loss": weights.to_str(),
                                             "bias_correction_images": BIAS_CORRECTION_IMAGES,
                                             "versions": versions()})
    specs = artifact_specs("qat")
    stored = stage.load(files=(*(s.name for s in specs), REFERENCE_LOGITS))
    if stored is not None:
        try:
            return QuantizeResult.from_stored(stored, stage.dir)
        except TypeError:
            pass  # a result of another version: quantize again
    stage.begin()
    converted, quantizer, qat = qat_finetune(student_model, ctx.full_data, ctx.teacher_train_logits(), qcfg, weights,
                                             teacher=ctx.teacher, student_size=ctx.student_size)
    np.save(stage.dir / REFERENCE_LOGITS, predict_split(converted, data, "test").numpy())
    inputs = ExportInputs(sample=torch.from_numpy(data.batch("train", slice(0, 4))),
                          dynamic_batch=family_of(student_model.spec).dynamic_batch,
                          converted=converted, quantizer=quantizer)
    export_artifacts(specs, inputs, stage.dir)
    result = QuantizeResult(losses=qat.losses, val_acc=qat.val_acc, test_acc=qat.test_acc, seconds=qat.seconds,
                            config=qcfg, bias_correction=dict(qat.bias_correction),
                            val_acc_before=qat.val_acc_before,
                            val_acc_fine_tuned=qat.val_acc_fine_tuned, fine_tuned_kept=qat.fine_tuned_kept, loss_used=qat.loss_used,
                            loss_dropped=dict(qat.loss_dropped), dir=str(stage.dir))
    stage.save(result.stored())
    return result
