"""The measure -> refit -> re-choose loop around stages 4-8.

Measured latency only steers the choice when it was measured where the target runs: on a device of
the target, or on this host for the host target. Then a student whose main artifact misses the
latency budget as measured refits the target's latency model, and the next choice is trained, at
most ``--max-rounds`` times; the build ends with a student that meets the budget as measured, or
exit 5 naming the best it found.
"""

from __future__ import annotations

from edgedistill.errors import BudgetError
from edgedistill.select.candidates import Candidate, Selection
from edgedistill.stages.context import BuildContext
from edgedistill.stages.round import RoundResult, student_round
from edgedistill.stages.select import FeedbackRound, next_candidate


def measured_choice(ctx: BuildContext, selection: Selection) -> tuple[RoundResult, Candidate, list[FeedbackRound]]:
    """The shipped student's round, the candidate it is, and the feedback rounds it took."""
    cfg, target, rep = ctx.cfg, ctx.target, ctx.rep
    feedback = ctx.device != "local" or target.device_kind == "local"
    budget = target.budgets.latency_ms
    candidate = selection.chosen
    measured: dict[str, float] = {}
    rounds: list[FeedbackRound] = []
    for round_no in range(1, cfg.max_rounds + 1):
        r = student_round(ctx, candidate, round_no)
        latency = r.main_latency_ms()
        if any(m.emulated for m in r.benchmarks.values()):
            rep.note(f"latency measured on an emulated board ({ctx.device}): the kernels are the device's, the "
                     "timings mean nothing for speed; it is reported, not used to re-choose the student")
            return r, candidate, rounds
        if not feedback:
            rep.note(f"latency measured on this host, not on a {target.name} device: it is reported, "
                     "not used to re-choose the student (benchmark on a device with --bench-device)")
            return r, candidate, rounds
        rounds.append(FeedbackRound(round=round_no, candidate=candidate.name, params=candidate.params,
                                    predicted_ms=candidate.predicted_latency_ms, measured_ms=latency,
                                    budget_ms=budget, within_budget=latency <= budget,
                                    accuracy=r.main_report().accuracy, measured_on=ctx.device))
        measured[candidate.key] = latency
        if latency <= budget:
            rep.note(f"round {round_no}: {candidate.name} measured {latency:.4g} ms <= budget {budget:g} ms")
            return r, candidate, rounds
        candidate = next_candidate(target, selection, measured, budget, rounds, rep)
    best = min(rounds, key=lambda x: x.measured_ms)
    raise BudgetError(
        f"after {cfg.max_rounds} rounds no student met {target.name}'s latency budget of {budget:g} ms as "
        f"measured on {ctx.device}; the fastest was {best.candidate} at {best.measured_ms:.4g} ms",
        hint="raise --max-latency-ms or --max-rounds, or benchmark on a quieter device",
    )
