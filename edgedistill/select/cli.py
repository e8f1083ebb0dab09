"""``edgedistill select``: a thin typer command over the select package.

Mount it on the main app with ``app.command("select")(select)``; :func:`select_command` does the
work and returns the exit code, for callers and tests.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgedistill.errors import EXIT_BUDGET, EXIT_OK
from edgedistill.streams import stdout_to_stderr


def _digits_shape() -> tuple[tuple[int, int, int], int]:
    from edgedistill.data.digits import load_digits_dataset

    data = load_digits_dataset(seed=0)
    return data.input_shape_nchw, data.num_classes


def run_select(target_name: str, max_latency_ms: float | None = None, max_size_kb: float | None = None,
               min_compression: float = 10.0, teacher_spec=None, input_shape: tuple[int, int, int] | None = None,
               teacher_params: int | None = None, calibration: Path | None = None, outside_zoo: bool = False):
    """A :class:`~edgedistill.select.candidates.Selection` for a target, without training anything.

    With no teacher, the built-in default teacher's spec on the digits input (untrained: only its
    shape matters here); ``outside_zoo``: the candidates a teacher outside the zoo of that size gets."""
    from edgedistill.hardware.latency_model import load_latency_model
    from edgedistill.hardware.targets import load_target
    from edgedistill.models import count_parameters, create_model
    from edgedistill.select.candidates import select_student

    target = load_target(target_name).with_budgets(max_latency_ms, max_size_kb)
    note = ""
    if teacher_spec is None:
        from edgedistill.models.resnet import ResNetSpec
        from edgedistill.select.candidates import zoo_teacher_spec
        from edgedistill.teacher.builtin import DEFAULT_TEACHER_DEPTHS, DEFAULT_TEACHER_WIDTHS

        input_shape, num_classes = _digits_shape()
        teacher_spec = ResNetSpec(input_shape[0], num_classes, DEFAULT_TEACHER_WIDTHS, DEFAULT_TEACHER_DEPTHS)
        note = "no teacher given: the built-in default teacher's shape on the digits input"
        if outside_zoo:
            # a teacher of the built-in one's size whose class is not a zoo model
            teacher_params = teacher_params or count_parameters(create_model(teacher_spec))
            teacher_spec, zoo_note = zoo_teacher_spec(None, input_shape[0], num_classes)
            note += f"; {zoo_note}"
    if teacher_params is None:
        teacher_params = count_parameters(create_model(teacher_spec))
    lm = load_latency_model(target.name, calibration) if calibration is not None else None
    sel = select_student(teacher_spec, input_shape, target, teacher_params, min_compression, latency_model=lm, note=note)
    return target, sel


def select_command(
    target: Annotated[str, typer.Option(help="Target name (see `edgedistill targets`) or a target TOML file.")] = "host",
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON: {candidates: [...], chosen: {...}}.")] = False,
    max_latency_ms: Annotated[Optional[float], typer.Option(help="Override the target's latency budget.")] = None,
    max_size_kb: Annotated[Optional[float], typer.Option(help="Override the target's model size budget.")] = None,
    min_compression: Annotated[float, typer.Option(help="Students must have this many times fewer parameters (as `build`).")] = 10.0,
    calibration: Annotated[Optional[Path], typer.Option(help="Latency model JSON [default: calibration/TARGET.json].")] = None,
    outside_zoo: Annotated[bool, typer.Option("--outside-zoo", help="Show what a teacher outside the zoo (any nn.Module) gets: inverted-residual students.")] = False,
) -> int:
    """Rank the students shaped like the teacher for TARGET and show which fits; trains nothing."""
    with stdout_to_stderr(json_out):  # with --json, stdout carries the JSON alone
        t, sel = run_select(target, max_latency_ms, max_size_kb, min_compression, calibration=calibration,
                            outside_zoo=outside_zoo)
    if json_out:
        print(json.dumps(sel.to_dict(), indent=2))
        return EXIT_OK if sel.chosen else EXIT_BUDGET
    from rich.table import Table

    from edgedistill.progress import console

    b = t.budgets
    table = Table(title=f"students for {t.name} (budgets: {b.latency_ms:g} ms, {b.model_size_kb:g} KB, "
                        f"{b.peak_memory_mb:g} MB; {t.precision}, {t.threads} thread(s))")
    for col in ("", "candidate", "params", "MFLOPs", "pred. ms", "size KB", "mem MB", "fits / why not"):
        table.add_column(col, justify="right" if col in ("params", "MFLOPs", "pred. ms", "size KB", "mem MB") else "left")
    for c in sel.candidates:
        mark = "->" if c is sel.chosen else ""
        ms = f"{c.predicted_latency_ms:.3f}" if c.predicted_latency_ms is not None else "-"
        table.add_row(mark, c.name, f"{c.params:,}", f"{c.flops / 1e6:.2f}", ms, f"{c.predicted_size_kb:.1f}",
                      f"{c.predicted_peak_memory_mb:.2f}", "fits" if c.fits else c.why_not)
    out = console()
    out.print(table)
    out.print(f"rule: {sel.rule}; latency: {sel.latency_model}" + (f"\nnote: {sel.note}" if sel.note else ""),
              highlight=False)
    if sel.chosen is None:
        out.print("no candidate fits: raise --max-latency-ms / --max-size-kb or lower --min-compression")
        return EXIT_BUDGET
    out.print(f"chosen: {sel.chosen.name}", highlight=False)
    return EXIT_OK


@functools.wraps(select_command)
def select(*args, **kwargs) -> None:
    """Rank the students shaped like the teacher for TARGET and show which fits; trains nothing."""
    raise typer.Exit(select_command(*args, **kwargs))
