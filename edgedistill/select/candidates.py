"""Students shaped like the teacher, ranked under a target's budgets with predicted latency.

Candidates keep the teacher's family and shrink it in proportion, by the family's own rule
(:attr:`~edgedistill.models.base.Family.shrink`: fewer blocks per stage or layers, narrower
channels or embedding). Each candidate gets, without exporting anything:

- size: a fully integer .tflite is int8 weights + int32 biases + the flatbuffer's fixed overhead,
  predicted from the parameter count (exact to a few percent for these graphs); fp32 is 4 bytes
  a parameter;
- latency: the target's calibrated :class:`~edgedistill.hardware.latency_model.LatencyModel`;
- peak memory: the model's footprint in the process that runs it, fitted on LiteRT + XNNPACK
  (:meth:`~edgedistill.hardware.cost.ModelCost.peak_memory_bytes`: activations, weights,
  XNNPACK's indirection tables and the runtime's own ~10 MB).

Selection takes the highest-capacity candidate that fits every budget. For small inputs (up to
32 px) the capacity proxy is the parameter count, then FLOPs. Above 32 px the input resolution is
searched too (:func:`search_resolutions`: the data's own and the rungs of 224/192/160/128/96 px
below it, down to 40% of its side): each spec is priced at each resolution, and the proxy is FLOPs,
then parameters, because at real resolution accuracy follows the multiply-adds whichever way they
are spent: in MobileNetV2's published ImageNet table 1.0 @128 px (99 MMACs) scores 65.3% and 0.5
@224 (97 MMACs) 65.4%, 1.0 @96 (56 MMACs) and 0.35 @224 (59 MMACs) both 60.3% (Sandler et al.
2018). A teacher outside the zoo that :mod:`edgedistill.teacher.recognise`
recognises (torchvision's ResNet layout, EfficientNet-Lite) is shrunk as the zoo family it maps
onto; any other gets candidates from the zoo's most target-friendly family, the inverted-residual
one (``mobilenet``: depthwise-separable convs with linear bottlenecks), shrunk from
:func:`~edgedistill.models.mobilenet.real_resolution_base` (MobileNetV2's layout above 32 px).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from edgedistill.hardware.targets import Target
from edgedistill.models import count_flops, count_parameters, create_model, families, get_family, spec_to_dict
# Size of a fully integer .tflite, fitted by scripts/fit_tflite_size.py on six residual and four
# inverted-residual students exported through the build's own path (within 376 bytes on all ten):
# one byte per weight, per quantized output channel an int32 bias plus per-channel scale and zero
# point, per weight layer its tensors' metadata. On the real-resolution layouts (nine resnet, mobilenet
# and mbconv models of 0.2-1.2 MB, stride-2 stems and head convs) the same constants err by at most
# +7.0% (an over-estimate), median 0.7% over all 19 (`scripts/fit_tflite_size.py --real-resolution`,
# 2026-12-01), so they stay.
TFLITE_BYTES_PER_CHANNEL = 25.8
TFLITE_BYTES_PER_LAYER = 866.0
TFLITE_BYTES_FIXED = 135.0
CAPACITY_RULE = "highest capacity (parameters, then FLOPs) whose predicted latency, size and peak memory fit"
RESOLUTION_RULE = ("highest capacity (FLOPs at its resolution, then parameters) over the searched input resolutions "
                   "whose predicted latency, size and peak memory fit")
RESOLUTION_LADDER = (224, 192, 160, 128, 96)
MIN_RESOLUTION_SHARE = 0.4  # lowest searched side, as a share of the data's


def search_resolutions(hw: tuple[int, int]) -> list[tuple[int, int]]:
    """The input sizes (H, W) a student may run at: the data's own first, then each ladder rung
    below its shorter side and at least ``MIN_RESOLUTION_SHARE`` of it, the aspect ratio kept.
    Small inputs (up to 32 px) are not searched."""
    from edgedistill.models.staged import SMALL_INPUT

    h, w = int(hw[0]), int(hw[1])
    if max(h, w) <= SMALL_INPUT:
        return [(h, w)]
    side = min(h, w)
    out = [(h, w)]
    for rung in RESOLUTION_LADDER:
        if MIN_RESOLUTION_SHARE * side <= rung < side:
            out.append((round(h * rung / side), round(w * rung / side)))
    return out


def _capacity(c: "Candidate") -> tuple:
    return (c.flops, c.params) if c.by_flops else (c.params, c.flops)


@dataclass
class Candidate:
    spec: object
    params: int
    flops: int
    predicted_size_kb: float
    predicted_latency_ms: float | None = None
    fits: bool = True
    why_not: str = ""
    predicted_peak_memory_mb: float | None = None
    measured_latency_ms: float | None = None
    # latency-model features per precision, so re-prediction after a refit needs no new trace
    features: dict = field(default_factory=dict, repr=False)
    # (H, W) the student runs at when it is below the data's (None: the data's own)
    resolution: tuple[int, int] | None = None
    by_flops: bool = False  # ranked by FLOPs first (the resolution search; see the module docstring)

    @property
    def name(self) -> str:
        name = self.spec.describe() if hasattr(self.spec, "describe") else str(self.spec)
        return name if self.resolution is None else f"{name} @{self.resolution[0]}x{self.resolution[1]}"

    @property
    def key(self) -> str:
        return spec_key(self.spec) + ("" if self.resolution is None else f"@{self.resolution}")

    @property
    def tag(self) -> str:
        """A file-name-safe name, e.g. ``resnet-w8-16-32-d2-2-2`` (a run-directory folder)."""
        return re.sub(r"[^A-Za-z0-9.]+", "-", self.name).strip("-")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("features")
        d["spec"] = spec_to_dict(self.spec)
        d["name"] = self.name
        return d


def shrink_specs(teacher_spec) -> list:
    """The teacher family's shrunk versions of the teacher (:attr:`~edgedistill.models.base.Family.shrink`,
    the teacher's own shape included), each shape once, in the family's order."""
    family = getattr(teacher_spec, "family", None)
    if family not in families():
        raise ValueError(f"no shrinking rule for family {family!r}")
    unique = {spec_key(s): s for s in get_family(family).shrink(teacher_spec)}
    return list(unique.values())


def spec_key(spec) -> str:
    return repr(sorted(spec_to_dict(spec).items()))


def size_features(model) -> dict[str, int]:
    """Parameters, output channels of the weight layers (conv and linear), and their number."""
    from torch import nn

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    channels = sum(m.out_channels if isinstance(m, nn.Conv2d) else m.out_features for m in layers)
    return {"params": count_parameters(model), "channels": channels, "layers": len(layers)}


def predicted_size_kb(model, precision: str) -> float:
    """Predicted .tflite size. The int8 constants are measured; fp16/fp32 scale the weight bytes
    (their per-channel quantization metadata is absent, so this is a slight over-estimate)."""
    f = size_features(model)
    per = {"int8": 1, "fp16": 2, "fp32": 4}[precision]
    return (per * f["params"] + TFLITE_BYTES_PER_CHANNEL * f["channels"] + TFLITE_BYTES_PER_LAYER * f["layers"]
            + TFLITE_BYTES_FIXED) / 1024.0


def _default_latency_model(target: Target):
    """The target's latency model: its calibration, else one derived from the nearest shipped
    target (:func:`~edgedistill.hardware.latency_model.latency_model_for`; an InputError when
    neither exists, never a silent "latency not predicted")."""
    from edgedistill.hardware.latency_model import latency_model_for

    return latency_model_for(target)


def evaluate_candidates(
    teacher_spec, input_shape: tuple[int, int, int], target: Target, teacher_params: int, min_ratio: float,
    latency_model=None, precision: str | None = None, resolutions: list[tuple[int, int]] | None = None,
) -> list[Candidate]:
    """Every shrunk spec at every searched resolution (``resolutions``, default
    :func:`search_resolutions`) with its cost and whether it fits; ``input_shape`` is (C, H, W).

    ``latency_model``: the target's model [default: :func:`_default_latency_model`]; latency is not
    predicted (nor used to exclude) only when it has no coefficients for the precision. Sorted
    highest capacity first.
    """
    from edgedistill.hardware.cost import trace_cost
    from edgedistill.models.staged import SMALL_INPUT

    precision = precision or target.precision
    model_for_latency = latency_model if latency_model is not None else _default_latency_model(target)
    native = (int(input_shape[1]), int(input_shape[2]))
    sizes = search_resolutions(native) if resolutions is None else list(resolutions)
    by_flops = max(native) > SMALL_INPUT
    out = []
    for spec in shrink_specs(teacher_spec):
        model = create_model(spec)
        params = count_parameters(model)
        size_kb = predicted_size_kb(model, precision)
        for hw in sizes:
            shape = (input_shape[0], *hw)
            cost = trace_cost(model, shape)
            cand = Candidate(spec, params, count_flops(model, shape), size_kb,
                             resolution=None if tuple(hw) == native else tuple(hw), by_flops=by_flops)
            cand.features = {p: cost.features(p) for p in ("int8", "fp32")}
            cand.predicted_peak_memory_mb = cost.peak_memory_bytes(precision) / 2**20
            if model_for_latency is not None and precision in model_for_latency.coefficients:
                cand.predicted_latency_ms = model_for_latency.predict_features(
                    cost.features(precision), precision, target.threads)
            _judge(cand, target, teacher_params, min_ratio)
            out.append(cand)
    out.sort(key=_capacity, reverse=True)
    return out


def _judge(cand: Candidate, target: Target, teacher_params: int, min_ratio: float) -> None:
    b = target.budgets
    reasons = []
    if cand.params * min_ratio > teacher_params:
        reasons.append(f"only {teacher_params / cand.params:.1f}x smaller than the teacher (need {min_ratio:g}x)")
    latency = cand.measured_latency_ms if cand.measured_latency_ms is not None else cand.predicted_latency_ms
    if latency is not None and latency > b.latency_ms:
        how = "measured" if cand.measured_latency_ms is not None else "predicted"
        reasons.append(f"{how} latency {latency:.3g} ms > {b.latency_ms:g} ms")
    if cand.predicted_size_kb > b.model_size_kb:
        reasons.append(f"size {cand.predicted_size_kb:.1f} KB > {b.model_size_kb:g} KB")
    if cand.predicted_peak_memory_mb is not None and cand.predicted_peak_memory_mb > b.peak_memory_mb:
        reasons.append(f"peak memory {cand.predicted_peak_memory_mb:.1f} MB > {b.peak_memory_mb:g} MB")
    cand.fits, cand.why_not = not reasons, "; ".join(reasons)


@dataclass
class Selection:
    """What ``select`` decided: every candidate (ranked), the chosen one, and how."""

    target: str
    teacher: str
    candidates: list[Candidate]
    chosen: Candidate | None
    rule: str = CAPACITY_RULE
    note: str = ""
    latency_model: str = ""

    def to_dict(self) -> dict:
        return {
            "target": self.target, "teacher": self.teacher, "rule": self.rule, "note": self.note,
            "latency_model": self.latency_model,
            "chosen": self.chosen.to_dict() if self.chosen else None,
            "candidates": [c.to_dict() for c in self.candidates],
        }


def zoo_teacher_spec(teacher, input_shape: tuple[int, int, int], num_classes: int,
                     recognised=None) -> tuple[object, str]:
    """(spec to shrink, note): the teacher's own spec (a zoo model, or the twin
    :mod:`edgedistill.teacher.recognise` made of it, ``recognised``), or for a teacher outside the
    zoo (an ``nn.Module`` without a zoo ``spec``) the inverted-residual family's base for this input
    size (:func:`~edgedistill.models.mobilenet.real_resolution_base`). ``input_shape`` is (C, H, W)."""
    spec = getattr(teacher, "spec", teacher if hasattr(teacher, "family") else None)
    if spec is not None and getattr(spec, "family", None) in families():
        if recognised is not None and recognised.spec is not None:
            return spec, f"teacher recognised as {recognised.describe()}"
        return spec, ""
    if recognised is not None and recognised.spec is not None:
        return recognised.spec, f"teacher recognised as {recognised.describe()}"
    from edgedistill.models.mobilenet import real_resolution_base

    base = real_resolution_base(input_shape[0], num_classes, input_shape[1:])
    why = f" ({recognised.reason})" if recognised is not None and recognised.reason else ""
    note = (f"teacher is outside the zoo{why}: candidates come from the zoo's most target-friendly family, "
            f"inverted residuals with depthwise-separable convs (shrunk from {base.describe()}); "
            "weights are not initialised from the teacher")
    return base, note


def select_student(teacher_spec, input_shape: tuple[int, int, int], target: Target, teacher_params: int,
                   min_ratio: float, latency_model=None, note: str = "",
                   resolutions: list[tuple[int, int]] | None = None) -> Selection:
    """Rank the candidates and choose the highest-capacity one that fits (None when none does)."""
    lm = latency_model if latency_model is not None else _default_latency_model(target)
    cands = evaluate_candidates(teacher_spec, input_shape, target, teacher_params, min_ratio, latency_model=lm,
                                resolutions=resolutions)
    chosen = next((c for c in cands if c.fits), None)
    lm_note = lm.describe(target.name)
    name = teacher_spec.describe() if hasattr(teacher_spec, "describe") else str(teacher_spec)
    rule = RESOLUTION_RULE if cands and cands[0].by_flops else CAPACITY_RULE
    return Selection(target.name, name, cands, chosen, rule=rule, note=note, latency_model=lm_note)


def next_choice(candidates: list[Candidate], measured: dict[str, float], budget_ms: float,
                latency_model=None, precision: str = "int8", threads: int | None = None) -> Candidate | None:
    """The next student to try after measuring some: highest capacity among those not measured over
    ``budget_ms`` whose latency (measured if known, else re-predicted with ``latency_model``, else
    the stored prediction) is within budget and which met every other budget before.

    ``measured`` maps :func:`spec_key` (``Candidate.key``) to a measured median in ms.
    Returns None when nothing is left. The candidates are updated in place (measured latency,
    re-predicted latency, and ``fits``/``why_not`` against ``budget_ms``), so a selection's table
    shows what the last choice was made from.
    """
    pool = []
    for c in candidates:
        other_reasons = [r for r in c.why_not.split("; ") if r and "latency" not in r]
        if other_reasons:
            continue
        if c.key in measured:
            c.measured_latency_ms = float(measured[c.key])
        elif latency_model is not None and precision in c.features and precision in latency_model.coefficients:
            c.predicted_latency_ms = latency_model.predict_features(c.features[precision], precision, threads)
        latency = c.measured_latency_ms if c.measured_latency_ms is not None else c.predicted_latency_ms
        if latency is not None and latency > budget_ms:
            how = "measured" if c.measured_latency_ms is not None else "predicted"
            c.fits, c.why_not = False, f"{how} latency {latency:.3g} ms > {budget_ms:g} ms"
        else:
            c.fits, c.why_not = True, ""
            pool.append(c)
    pool.sort(key=_capacity, reverse=True)
    return pool[0] if pool else None
