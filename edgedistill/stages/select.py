"""Stage 3, select: the students shaped like the teacher, ranked by capacity, the largest whose
predicted latency, int8 size and peak memory fit the target; and, after a measured miss, the next
choice under the latency model refitted with what was measured (the feedback loop)."""

from __future__ import annotations

from dataclasses import dataclass

from edgedistill.errors import BudgetError, InputError
from edgedistill.select.candidates import Candidate, Selection


@dataclass
class FeedbackRound:
    """One measured student in the measure -> refit -> re-choose loop."""

    round: int
    candidate: str
    params: int
    predicted_ms: float | None
    measured_ms: float
    budget_ms: float
    within_budget: bool
    accuracy: float  # the main artifact's test accuracy
    measured_on: str


def select_stage(cfg, target, teacher, teacher_params: int, data, rep, recognised=None) -> Selection:
    from edgedistill.models import family_of
    from edgedistill.select.candidates import select_student, zoo_teacher_spec

    rep.stage("select", f"student for {target.name}: >= {cfg.min_compression:g}x smaller, within "
              f"{target.budgets.latency_ms:g} ms, {target.budgets.model_size_kb:g} KB, "
              f"{target.budgets.peak_memory_mb:g} MB")
    teacher_spec, note = zoo_teacher_spec(teacher, data.input_shape_nchw, data.num_classes, recognised)
    if note:
        rep.note(note)
    problem = family_of(teacher_spec).int8_problem if target.precision == "int8" else ""
    if problem:  # checked before any training: the students keep the teacher's family
        raise InputError(
            f"the teacher is a zoo {teacher_spec.family} model, so its students would be too, and {target.name} "
            f"ships a fully integer model: {problem}",
            hint="distil into a CNN instead: pass the teacher as a factory whose class is not a zoo model "
                 "(it then gets inverted-residual students)",
        )
    sel = select_student(teacher_spec, data.input_shape_nchw, target, teacher_params, cfg.min_compression,
                         note=note)
    if sel.chosen is None:
        best = min(sel.candidates, key=lambda x: x.params)
        raise BudgetError(
            f"no student shaped like the teacher meets {target.name}'s budgets; the smallest "
            f"({best.name}, {best.params:,} params) fails: {best.why_not}",
            hint="raise --max-size-kb / --max-latency-ms, lower --min-compression, or resize the data to a lower "
                 "resolution (--image-size H --image-size W): latency and memory scale with the pixels",
        )
    ch = sel.chosen
    lat = "n/a" if ch.predicted_latency_ms is None else f"{ch.predicted_latency_ms:.4g} ms"
    rep.note(f"chose {ch.name}: {ch.params:,} params ({teacher_params / ch.params:.1f}x fewer), predicted "
             f"int8 size {ch.predicted_size_kb:.1f} KB, latency {lat} ({sel.latency_model})")
    return sel


def next_candidate(target, selection: Selection, measured: dict[str, float], budget: float,
                   rounds: list[FeedbackRound], rep) -> Candidate:
    """Refit the target's latency model with what was measured and choose again."""
    from edgedistill.bench import LatencyStore
    from edgedistill.hardware.calibrate import matching_measurements, refit_from_measurement
    from edgedistill.select.candidates import next_choice

    model = refit_from_measurement(target, matching_measurements(target, LatencyStore().records()))
    nxt = next_choice(selection.candidates, measured, budget, latency_model=model,
                      precision=target.precision, threads=target.threads)
    last = rounds[-1]
    if nxt is None:
        best = min(rounds, key=lambda r: r.measured_ms)
        raise BudgetError(
            f"{last.candidate} measured {last.measured_ms:.4g} ms > {target.name}'s budget {budget:g} ms and no "
            f"smaller candidate is predicted to fit; the best measured was {best.candidate} at "
            f"{best.measured_ms:.4g} ms",
            hint="raise --max-latency-ms, or lower --min-compression to allow other students",
        )
    predicted = "n/a" if nxt.predicted_latency_ms is None else f"{nxt.predicted_latency_ms:.4g}"
    rep.note(f"round {last.round}: {last.candidate} measured {last.measured_ms:.4g} ms > budget "
             f"{budget:g} ms; latency model refitted; next: {nxt.name} (predicted {predicted} ms)")
    return nxt
