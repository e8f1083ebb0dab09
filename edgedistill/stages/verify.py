"""Stage 7, verify: every artifact against its torch reference (accuracy, top-1 agreement, and its
backend's own checks). A failure stops the build before anything reaches the bundle. The reports
keep each artifact's predictions for the bundle's verification sample and the report."""

from __future__ import annotations

from edgedistill.stages.context import BuildContext
from edgedistill.stages.export import ExportResult
from edgedistill.stages.quantize import QuantizeResult
from edgedistill.verify.checks import ArtifactReport, require_all_passed, verify_artifact


def verify_stage(ctx: BuildContext, qat: QuantizeResult, export: ExportResult) -> list[ArtifactReport]:
    references = {"qat": qat.reference_logits(), "fp32": export.reference_logits()}
    reports = [verify_artifact(a, ctx.data, references[a.spec.reference]) for a in qat.artifacts() + export.artifacts()]
    require_all_passed(reports)
    for r in reports:
        ctx.rep.note(f"{r.file:<18} acc {r.accuracy:.4f}  agreement {r.agreement:.4f} vs {r.reference}")
    return reports
