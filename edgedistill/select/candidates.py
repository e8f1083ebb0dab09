"""Students shaped like the teacher: the same family with fewer blocks and narrower stages.

This module proposes candidates and ranks them under a target's budgets. The size of a fully
integer .tflite is predicted from the parameter count (int8 weights, int32 biases, plus the
flatbuffer's fixed overhead), which is exact to within a few percent for these graphs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from edgedistill.models import count_flops, count_parameters, create_model, spec_to_dict
from edgedistill.select.targets import Target

WIDTH_MULTIPLIERS = (1.0, 0.75, 0.5, 0.375, 0.25, 0.1875, 0.125)
TFLITE_OVERHEAD_BYTES = 6_000  # flatbuffer, op list, quantization parameters


@dataclass
class Candidate:
    spec: object
    params: int
    flops: int
    predicted_size_kb: float
    predicted_latency_ms: float | None = None
    fits: bool = True
    why_not: str = ""

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["spec"] = spec_to_dict(self.spec)
        d["name"] = self.spec.describe() if hasattr(self.spec, "describe") else str(self.spec)
        return d


def _round_width(w: float, multiple: int = 4) -> int:
    return max(multiple, int(round(w / multiple)) * multiple)


def shrink_specs(teacher_spec) -> list:
    """Narrower (width multipliers, channels kept in proportion) and shallower (fewer blocks per
    stage) versions of the teacher's own architecture."""
    specs = []
    if teacher_spec.family == "resnet":
        depth_options = {tuple(teacher_spec.depths), tuple(max(1, d // 2) for d in teacher_spec.depths)}
        for depths in sorted(depth_options, reverse=True):
            for m in WIDTH_MULTIPLIERS:
                widths = tuple(_round_width(w * m) for w in teacher_spec.widths)
                specs.append(dataclasses.replace(teacher_spec, widths=widths, depths=depths))
    elif teacher_spec.family == "vit":
        for depth in sorted({teacher_spec.depth, max(1, teacher_spec.depth // 2)}, reverse=True):
            for m in WIDTH_MULTIPLIERS:
                heads = max(1, round(teacher_spec.heads * m)) if m >= 0.5 else max(1, teacher_spec.heads // 2)
                dim = _round_width(teacher_spec.dim * m, 4 * heads)
                specs.append(dataclasses.replace(teacher_spec, dim=dim, depth=depth, heads=heads))
    else:
        raise ValueError(f"no shrinking rule for family {teacher_spec.family!r}")
    unique = {spec_key(s): s for s in specs}
    return list(unique.values())


def spec_key(spec) -> str:
    return repr(sorted(spec_to_dict(spec).items()))


def predicted_int8_size_kb(params: int) -> float:
    return (params + TFLITE_OVERHEAD_BYTES) / 1024.0


def evaluate_candidates(
    teacher_spec, input_shape: tuple[int, int, int], target: Target, teacher_params: int, min_ratio: float
) -> list[Candidate]:
    """Every shrunk spec with its cost and whether it fits; ``input_shape`` is (C, H, W)."""
    out = []
    for spec in shrink_specs(teacher_spec):
        model = create_model(spec)
        params = count_parameters(model)
        cand = Candidate(spec, params, count_flops(model, input_shape), predicted_int8_size_kb(params))
        reasons = []
        if params * min_ratio > teacher_params:
            reasons.append(f"only {teacher_params / params:.1f}x smaller than the teacher (need {min_ratio:g}x)")
        if cand.predicted_size_kb > target.budgets.model_size_kb:
            reasons.append(f"size {cand.predicted_size_kb:.1f} KB > {target.budgets.model_size_kb:g} KB")
        cand.fits, cand.why_not = not reasons, "; ".join(reasons)
        out.append(cand)
    # Highest capacity first: the proxy is parameters, then FLOPs.
    out.sort(key=lambda c: (c.params, c.flops), reverse=True)
    return out

