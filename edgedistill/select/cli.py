"""``edgedistill select``: a thin typer command over the select package.

Mount it on the main app with ``app.command("select")(select)``; :func:`select_command` does the
work and returns the exit code, for callers and tests.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgedistill.config import BuildConfig
from edgedistill.errors import EXIT_BUDGET, EXIT_OK
from edgedistill.streams import stdout_to_stderr


def _digits_shape() -> tuple[tuple[int, int, int], int]:
    from edgedistill.data.digits import load_digits_dataset

    data = load_digits_dataset(seed=0)
    return data.input_shape_nchw, data.num_classes


@dataclass
class SelectInputs:
    """What ``select`` ranks for: the input (C, H, W), the classes, and the teacher when one is given
    (its module and what recognition made of it)."""

    input_shape: tuple[int, int, int]
    num_classes: int
    teacher: object = None  # nn.Module, or None for the built-in teacher's shape
    recognised: object = None


def select_inputs(teacher: str | None = None, weights: Path | None = None, data: Path | None = None,
                  input_shape: tuple[int, int, int] | None = None, image_size: tuple[int, int] | None = None,
                  channels: int | None = None, classes: int = 10, decoded_cache: bool = True) -> SelectInputs:
    """The input, classes and teacher from the same options ``build`` takes (``--data`` with
    ``--image-size``/``--channels``, ``--teacher``/``--weights``), or an ``--input-shape`` without
    data (the classes then come from the teacher's output, else ``classes``); the digits demo when
    none is given. ``decoded_cache``: as ``build``'s, the decoded images on disk in the cache
    (where a later build finds them) or in memory."""
    from edgedistill.errors import InputError

    if data is not None and input_shape is not None:
        raise InputError("--data and --input-shape both say what the input is", hint="give one of them")
    if input_shape is not None and min(input_shape) < 1:
        raise InputError(f"--input-shape {' '.join(map(str, input_shape))}: channels, height and width must be "
                         "positive", hint="give C H W, e.g. --input-shape 3 224 224")
    if data is None and (image_size or channels):
        raise InputError("--image-size and --channels apply to --data", hint="give --data PATH, or --input-shape C H W")
    module = loaded = None
    if teacher is not None:
        from edgedistill.teacher.load import load_teacher

        loaded = load_teacher(teacher, weights)
        module = loaded.module.eval()
    elif weights is not None:
        raise InputError("--weights only applies to --teacher", hint="give --teacher FILE.py:FUNCTION, or drop --weights")
    if data is not None:
        from edgedistill.data.load import load_dataset
        from edgedistill.paths import cache_dir
        from edgedistill.teacher.load import infer_io

        dataset = load_dataset(Path(data), image_size=image_size, channels=channels,
                               store=cache_dir() / "decoded" if decoded_cache else None)
        if loaded is not None:
            infer_io(loaded, dataset)
        shape, classes = dataset.input_shape_nchw, dataset.num_classes
    elif input_shape is not None:
        shape = tuple(input_shape)
        if module is not None:
            classes = _classes_of(module, shape, teacher)
    elif module is not None:
        raise InputError("--teacher needs the input it ranks students for", hint="give --data PATH or --input-shape C H W")
    else:
        shape, classes = _digits_shape()
    recognised = None
    if module is not None and getattr(getattr(module, "spec", None), "family", None) is None:
        from edgedistill.teacher.recognise import recognise

        recognised = recognise(module, shape, classes)
    return SelectInputs(shape, classes, module, recognised)


def _classes_of(module, shape: tuple[int, int, int], name: str) -> int:
    import torch

    from edgedistill.errors import InputError

    try:
        with torch.no_grad():
            out = module(torch.zeros((2, *shape)))
    except Exception as err:  # a user model fails in many ways; each means "not this input"
        raise InputError(f"teacher {name} does not take input (C,H,W)={shape}: {str(err).splitlines()[0][:200]}",
                         hint="check --input-shape") from err
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise InputError(f"teacher {name} does not return logits (N, classes) for input {shape}")
    return int(out.shape[1])


def run_select(target_name: str, max_latency_ms: float | None = None, max_size_kb: float | None = None,
               min_compression: float = 10.0, teacher_spec=None, input_shape: tuple[int, int, int] | None = None,
               teacher_params: int | None = None, calibration: Path | None = None, outside_zoo: bool = False,
               inputs: SelectInputs | None = None):
    """A :class:`~edgedistill.select.candidates.Selection` for a target, without training anything.

    ``inputs`` (:func:`select_inputs`): a teacher and the input to rank for. Without a teacher, the
    built-in teacher's spec for the input (untrained: only its shape matters here), the digits
    by default; ``outside_zoo``: the candidates a teacher outside the zoo of that size gets."""
    from edgedistill.hardware.latency_model import load_latency_model
    from edgedistill.hardware.targets import load_target
    from edgedistill.models import count_parameters, create_model
    from edgedistill.select.candidates import select_student, zoo_teacher_spec

    target = load_target(target_name).with_budgets(max_latency_ms, max_size_kb)
    note = ""
    if inputs is not None and inputs.teacher is not None:
        input_shape = inputs.input_shape
        teacher_params = count_parameters(inputs.teacher)
        teacher_spec, note = zoo_teacher_spec(inputs.teacher, input_shape, inputs.num_classes, inputs.recognised)
    elif teacher_spec is None:
        from edgedistill.teacher.builtin import default_teacher_spec

        input_shape, num_classes = (inputs.input_shape, inputs.num_classes) if inputs else _digits_shape()
        teacher_spec = default_teacher_spec(input_shape, num_classes)
        note = ("no teacher given: the built-in default teacher's shape on "
                + ("the digits input" if inputs is None or inputs.input_shape == (1, 8, 8) else f"input {input_shape}"))
        if outside_zoo:
            # a teacher of the built-in one's size whose class is not a zoo model
            teacher_params = teacher_params or count_parameters(create_model(teacher_spec))
            teacher_spec, zoo_note = zoo_teacher_spec(None, input_shape, num_classes)
            note += f"; {zoo_note}"
    if teacher_params is None:
        teacher_params = count_parameters(create_model(teacher_spec))
    lm = load_latency_model(target.name, calibration) if calibration is not None else None
    sel = select_student(teacher_spec, input_shape, target, teacher_params, min_compression, latency_model=lm, note=note)
    return target, sel


def select_command(
    target: Annotated[str, typer.Option(help="Target name (see `edgedistill targets`) or a target TOML file.")] = "host",
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON: {candidates: [...], chosen: {...}}.")] = False,
    max_latency_ms: Annotated[Optional[float], typer.Option(help="Override the target's latency budget [default: the target's].")] = None,
    max_size_kb: Annotated[Optional[float], typer.Option(help="Override the target's model size budget [default: the target's].")] = None,
    min_compression: Annotated[float, typer.Option(help="Students must have this many times fewer parameters (as `build`).")] = BuildConfig.min_compression,
    calibration: Annotated[Optional[Path], typer.Option(help="Latency model JSON [default: calibration/TARGET.json].")] = None,
    outside_zoo: Annotated[bool, typer.Option("--outside-zoo", help="Show what a teacher outside the zoo (any nn.Module) gets: inverted-residual students.")] = False,
    teacher: Annotated[Optional[str], typer.Option(help="Teacher, as `build` takes it: .pt2, TorchScript, or FILE.py:FUNCTION / module:FUNCTION [default: the built-in teacher's shape].")] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Teacher weights (.safetensors or a state_dict) for a factory teacher [default: none].")] = None,
    data: Annotated[Optional[Path], typer.Option(help="ImageFolder tree or .npz whose input size and classes to rank for [default: built-in digits].")] = None,
    image_size: Annotated[Optional[list[int]], typer.Option(help="Resize the data to H W, as `build` does (give twice) [default: the most common size].")] = None,
    channels: Annotated[Optional[int], typer.Option(help="Convert the data to 1 or 3 channels, as `build` does [default: as the images are].")] = None,
    input_shape: Annotated[Optional[tuple[int, int, int]], typer.Option(help="Rank for input C H W without data (with --teacher, or the built-in teacher's shape), e.g. --input-shape 3 224 224 [default: the data's, else the digits' 1 8 8].")] = None,
    classes: Annotated[int, typer.Option(min=2, help="Classes, with --input-shape and no --teacher (a teacher says its own).")] = 10,
    decoded_cache: Annotated[bool, typer.Option("--decoded-cache/--no-decoded-cache", help="Keep --data's decoded, resized images on disk in the cache, where a later build reuses them, instead of in memory, as `build` does.")] = True,
) -> int:
    """Rank the students shaped like the teacher for TARGET and show which fits; trains nothing."""
    with stdout_to_stderr(json_out):  # with --json, stdout carries the JSON alone
        inputs = None
        if any(v is not None for v in (teacher, weights, data, input_shape, channels)) or image_size:
            inputs = select_inputs(teacher, weights, data, input_shape, tuple(image_size) if image_size else None,
                                   channels, classes, decoded_cache=decoded_cache)
        t, sel = run_select(target, max_latency_ms, max_size_kb, min_compression, calibration=calibration,
                            outside_zoo=outside_zoo, inputs=inputs)
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
