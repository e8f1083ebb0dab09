"""One candidate student through stages 4-8: distill, quantize, export, verify, bench."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from edgedistill import __version__
from edgedistill.artifacts import Artifact
from edgedistill.backends import artifact_specs
from edgedistill.bench.measurement import Measurement
from edgedistill.models import count_parameters, spec_to_dict
from edgedistill.stages.bench import bench_stage
from edgedistill.stages.context import BuildContext
from edgedistill.stages.export import ExportResult, export_stage
from edgedistill.stages.quantize import QuantizeResult, quantize_stage
from edgedistill.stages.student import StudentResult, train_student
from edgedistill.stages.verify import verify_stage
from edgedistill.verify.checks import ArtifactReport


@dataclass
class RoundResult:
    student: StudentResult
    student_model: torch.nn.Module
    qat: QuantizeResult
    export: ExportResult
    verification: list[ArtifactReport]  # in artifact order, the main artifact first
    benchmarks: dict[str, Measurement]  # by artifact name
    inputs: dict  # the stage key's inputs the scratch baseline shares (run-directory keys only)
    ctx: BuildContext  # the build as this student sees it (its resolution's data)

    @property
    def artifacts(self) -> list[Artifact]:
        return self.qat.artifacts() + self.export.artifacts()

    def main_report(self) -> ArtifactReport:
        return next(r for r, a in zip(self.verification, self.artifacts) if a.spec.main)

    def main_latency_ms(self) -> float:
        main = next(a for a in self.artifacts if a.spec.main)
        return self.benchmarks[main.name].median_ms


def stage_inputs(ctx: BuildContext, candidate) -> dict:
    """What every stage of this student depends on, for its run-directory key."""
    inputs = {"data": ctx.full_data.fingerprint(), "teacher": ctx.teacher_info.key,
              "student": spec_to_dict(candidate.spec), "train": dataclasses.asdict(ctx.train_cfg),
              "init_from_teacher": ctx.cfg.init_from_teacher, "edgedistill": __version__, "torch": torch.__version__}
    if getattr(candidate, "resolution", None) is not None:
        inputs["resolution"] = list(candidate.resolution)
    return inputs


def student_round(ctx: BuildContext, candidate, round_no: int) -> RoundResult:
    ctx = ctx.at_resolution(getattr(candidate, "resolution", None))
    cfg, rep, tag = ctx.cfg, ctx.rep, candidate.tag
    inputs = stage_inputs(ctx, candidate)
    prefix = f"round {round_no}: " if round_no > 1 else ""
    loss = ctx.weights.to_str()
    rep.stage("distill", f"{prefix}{candidate.name} ({candidate.params:,} params) from the teacher "
              f"({count_parameters(ctx.teacher):,}), loss {loss}")
    student, student_model = train_student(
        ctx.rd, f"{tag}/distill", {**inputs, "loss": loss, "assistant_ratio": cfg.assistant_ratio},
        candidate.spec, ctx.full_data, ctx.train_cfg, ctx.teacher, ctx.weights, rep, label="distill",
        assistant_ratio=cfg.assistant_ratio, init_from_teacher=cfg.init_from_teacher, seed_teacher=ctx.seed_teacher,
        student_size=ctx.student_size, teacher_logits_to=ctx.keep_teacher_train_logits,
    )
    qat_names = ", ".join(a.name for a in artifact_specs("qat"))
    rep.stage("quantize", f"quantization-aware fine-tuning ({cfg.qat_epochs} epochs, the build's loss on logits), "
              f"then {qat_names}")
    qat = quantize_stage(ctx, tag, student_model, inputs)
    rep.note(f"QAT loss {qat.loss_used}; torch reference test accuracy {qat.test_acc:.4f}")
    rep.note(f"int8 val accuracy {qat.val_acc_before:.4f} before fine-tuning, {qat.val_acc_fine_tuned:.4f} after: "
             + ("the fine-tuned graph ships" if qat.fine_tuned_kept
                else "the graph before fine-tuning, clearly better, ships (post-training quantized, bias-corrected)"))
    bc = qat.bias_correction
    if bc.get("layers"):
        rep.note(f"bias correction: {bc['layers']} layers, int8 weight error measured on {bc['images']} training images "
                 f"(largest shift {bc['max_shift']:.3g})")
    for term, why in qat.loss_dropped.items():
        rep.note(f"QAT left out {term}: {why}")
    rep.stage("export", ", ".join(a.name for a in artifact_specs("float")))
    export = export_stage(ctx, tag, student_model, inputs)
    rep.stage("verify", "accuracy, agreement with the torch reference, and each backend's checks")
    verification = verify_stage(ctx, qat, export)
    benchmarks = bench_stage(ctx, qat.artifacts() + export.artifacts(), candidate.spec)
    return RoundResult(student, student_model, qat, export, verification, benchmarks, inputs, ctx)
