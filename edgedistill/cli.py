"""The ``edgedistill`` command line: a thin layer over the package (every command is a call a
Python user can make too). Errors the user can act on print one line and exit with their code."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from edgedistill.streams import stdout_to_stderr
from edgedistill.progress import console
from rich.table import Table

from edgedistill import __version__
from edgedistill.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EdgeDistillError

app = typer.Typer(
    name="edgedistill",
    help="Distil a teacher into a small student and ship it to an edge device.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: rich markup would read "[default: 40]" or "ssh://[user@]host" as tags and
    # drop them, and its option table shows a "<bool>" type for every on/off flag.
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},
)
targets_app = typer.Typer(help="List hardware targets, or show one.", invoke_without_command=True,
                          rich_markup_mode=None)
app.add_typer(targets_app, name="targets")


def _version(value: bool) -> None:
    if value:
        print(f"edgedistill {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    pass


@app.command()
def build(
    target: Annotated[Optional[str], typer.Option(help="Target name (see `edgedistill targets`) or a target TOML file [default: android-arm64].")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Bundle root; the bundle goes to OUT/TARGET [default: dist].")] = None,
    config: Annotated[Optional[Path], typer.Option(help="Build config TOML [default: ./edgedistill.toml if present].")] = None,
    run_dir: Annotated[Optional[Path], typer.Option(help="Run directory for stage results [default: runs/TARGET].")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for the data split, the student's initialisation and shuffling [default: 0]; the built-in teacher's recipe is fixed.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="ImageFolder tree or .npz [default: built-in digits].")] = None,
    teacher: Annotated[Optional[str], typer.Option(help="Teacher: .pt2, TorchScript, or FILE.py:FUNCTION / module:FUNCTION [default: the built-in residual CNN, trained on first use].")] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Teacher weights (.safetensors or a state_dict) for a factory teacher [default: none].")] = None,
    mean: Annotated[Optional[list[float]], typer.Option(help="Per-channel mean of scaled pixels (repeat per channel) [default: from the training data].")] = None,
    std: Annotated[Optional[list[float]], typer.Option(help="Per-channel std of scaled pixels (repeat per channel) [default: from the training data].")] = None,
    image_size: Annotated[Optional[list[int]], typer.Option(help="Resize images to H W (give twice: --image-size 28 --image-size 28) [default: the most common size].")] = None,
    strict: Annotated[Optional[bool], typer.Option("--strict/--no-strict", help="Fail on unreadable images instead of skipping them [default: off].")] = None,
    channels: Annotated[Optional[int], typer.Option(help="Convert the images to 1 (grayscale) or 3 (RGB) channels [default: as the images are: 1 if all are grayscale, else 3].")] = None,
    decoded_cache: Annotated[Optional[bool], typer.Option("--decoded-cache/--no-decoded-cache", help="Keep an ImageFolder's decoded, resized images on disk in the cache (read a batch at a time, reused by later builds) instead of in memory [default: on].")] = None,
    distill: Annotated[Optional[str], typer.Option("--distill", help="Loss weights, e.g. kd=1.0,hint=0.5,attention=0.5,rkd=0.2,dist=1,ce=0.5,T=4 [default: the recipe's].")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Distillation epochs [default: 40].")] = None,
    teacher_epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs of the built-in teacher [default: 30].")] = None,
    qat_epochs: Annotated[Optional[int], typer.Option(min=1, help="Quantization-aware fine-tuning epochs [default: 4].")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=2, help="Global batch of the student and scratch training (the built-in teacher has its own recipe): under torchrun each process takes its share [default: 64].")] = None,
    lr: Annotated[Optional[float], typer.Option(min=1e-9, help="Peak learning rate of the student and scratch training (one-cycle schedule) [default: 0.003].")] = None,
    augment: Annotated[Optional[bool], typer.Option("--augment/--no-augment", help="Augment, the same view for teacher and student: random +-1 pixel shifts up to 32 px, random-resized crops above [default: the recipe's].")] = None,
    flip: Annotated[Optional[bool], typer.Option("--flip/--no-flip", help="With --augment above 32 px, mirror half the crops left-right (off for data where a mirror changes the class) [default: on].")] = None,
    assistant_ratio: Annotated[Optional[float], typer.Option(help="Distil through teacher assistants when teacher/student parameters exceed this ratio [default: 50].")] = None,
    scratch: Annotated[Optional[bool], typer.Option("--scratch/--no-scratch", help="Also train the student from labels alone, for comparison [default: on].")] = None,
    device: Annotated[Optional[str], typer.Option(help="Training device: auto, cpu, cuda, cuda:N [default: auto].")] = None,
    bench_device: Annotated[Optional[str], typer.Option(help="Where to benchmark: local, ssh://..., adb[:SERIAL] [default: target's device or local].")] = None,
    bench_runs: Annotated[Optional[int], typer.Option(min=1, help="Timed benchmark runs [default: 100].")] = None,
    max_latency_ms: Annotated[Optional[float], typer.Option(help="Latency budget (ms): selection aims under it and the measured model.tflite must meet it (gate, exit 4) [default: the target's budget, no gate].")] = None,
    max_size_kb: Annotated[Optional[float], typer.Option(help="Size budget (KB): selection aims under it and model.tflite must meet it (gate, exit 4) [default: the target's budget, no gate].")] = None,
    min_accuracy: Annotated[Optional[float], typer.Option(help="Gate: model.tflite test accuracy at least this fraction, e.g. 0.95 (exit 4) [default: no gate].")] = None,
    max_accuracy_drop: Annotated[Optional[float], typer.Option(help="Gate: model.tflite accuracy at most this far below the reference, e.g. 0.01 (exit 4) [default: no gate].")] = None,
    drop_reference: Annotated[Optional[str], typer.Option(help="Reference of --max-accuracy-drop: fp32 (the distilled student) or teacher [default: fp32].")] = None,
    min_teacher_accuracy: Annotated[Optional[float], typer.Option(help="Gate: the teacher's validation accuracy at least this fraction, e.g. 0.5; checked before training (exit 4) [default: no gate].")] = None,
    min_compression: Annotated[Optional[float], typer.Option(help="The student has at least this many times fewer parameters than the teacher [default: 10].")] = None,
    max_rounds: Annotated[Optional[int], typer.Option(min=1, help="Measure/re-choose rounds when the measured latency misses the budget [default: 3].")] = None,
    init_from_teacher: Annotated[Optional[bool], typer.Option("--init-from-teacher/--no-init-from-teacher", help="Start the student from the teacher's weights where shapes allow [default: on].")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout, also when the build stops early.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    sync_batchnorm: Annotated[Optional[bool], typer.Option("--sync-batchnorm/--no-sync-batchnorm", help="Under torchrun, BatchNorm normalises with the global batch's statistics, so N processes learn as one does; off: each process's own (faster on CPUs) [default: on].")] = None,
    arm_board: Annotated[Optional[str], typer.Option(help="Verify model.tflite on this aarch64 board (a devices.toml name or ssh://...) against x86, or off [default: the target's emulated board when `edgedistill board up TARGET` runs it].")] = None,
    arm_tolerance_steps: Annotated[Optional[int], typer.Option(min=0, help="ARM verification fails (exit 3) when an output differs from x86 by more quantization steps than this; 0: bit-exact [default: 2].")] = None,
    nproc: Annotated[Optional[int], typer.Option(min=1, help="Train on N processes of this machine (one GPU each, or CPU processes) under torchrun's launcher; for several machines run torchrun yourself (README) [default: 1].")] = None,
) -> None:
    """Distil, quantize, export, verify and benchmark a student; write the bundle to OUT/TARGET."""
    from edgedistill import ranks
    from edgedistill.config import load_config_file, resolve_config
    from edgedistill.pipeline import build as run_build
    from edgedistill.progress import Reporter

    if nproc is not None and nproc > 1:
        raise typer.Exit(ranks.launch(nproc, _without_nproc(sys.argv[sys.argv.index("build") + 1:])))
    _quiet_torch()
    ranks.terminate_as_interrupt()
    flags = {
        "target": target,
        "out": str(out) if out else None, "run_dir": str(run_dir) if run_dir else None, "seed": seed,
        "data": str(data) if data else None, "teacher": teacher, "weights": str(weights) if weights else None,
        "mean": mean, "std": std, "image_size": image_size, "channels": channels, "strict": strict, "decoded_cache": decoded_cache, "loss": distill, "epochs": epochs,
        "teacher_epochs": teacher_epochs, "qat_epochs": qat_epochs, "scratch_baseline": scratch,
        "batch_size": batch_size, "lr": lr, "sync_batchnorm": sync_batchnorm, "arm_board": arm_board,
        "arm_tolerance_steps": arm_tolerance_steps,
        "augment": augment, "flip": flip, "assistant_ratio": assistant_ratio,
        "device": device, "bench_device": bench_device, "bench_runs": bench_runs,
        "max_latency_ms": max_latency_ms, "max_size_kb": max_size_kb, "min_compression": min_compression,
        # The budget flags are also gates on the measured result.
        "gate_max_latency_ms": max_latency_ms, "gate_max_size_kb": max_size_kb,
        "gate_min_accuracy": min_accuracy, "gate_max_accuracy_drop": max_accuracy_drop,
        "gate_drop_reference": drop_reference, "max_rounds": max_rounds, "init_from_teacher": init_from_teacher,
        "gate_min_teacher_accuracy": min_teacher_accuracy,
    }

    def resolved():
        path = config if config is not None else (Path("edgedistill.toml") if Path("edgedistill.toml").is_file() else None)
        return resolve_config(load_config_file(path) if path is not None else {}, flags)

    # Under torchrun only rank 0 speaks for the build on stdout; the other ranks exit with its code.
    with _json_on_error("build", json_out and ranks.rank() == 0):
        cfg = resolved()
        rep = Reporter(quiet=quiet)
        if ranks.under_torchrun():
            ranks.join()
            if ranks.rank() != 0:  # the other ranks train at rank 0's word and exit with its code
                with ranks.peer_loss_as_error(Path(cfg.run_path())):
                    raise typer.Exit(ranks.follow_build(cfg))
            ranks.lead(rep)
        with ranks.peer_loss_as_error(Path(cfg.run_path())):
            _build(cfg, run_build, rep, json_out)


def _build(cfg, run_build, rep, json_out: bool) -> None:
    if not json_out:
        run_build(cfg, rep)
        return
    from edgedistill.gates import summary_json

    # With --json, stdout carries the summary and nothing else: what the libraries print meanwhile
    # goes to stderr. A build that stops early gets its summary from _json_on_error.
    with stdout_to_stderr():
        result = run_build(cfg, rep)
    manifest = json.loads((result.bundle_dir / "manifest.json").read_text())
    print(json.dumps(summary_json("ok", result.gates, 0, None, manifest, result.bundle_dir), indent=2))


@contextlib.contextmanager
def _json_on_error(command: str, enabled: bool):
    """With --json, a command that stops early (an error, a failed gate, Ctrl-C, a bug) still prints
    its one document on stdout, then the error takes its usual way (one line on stderr, its exit
    code). The document is printed after the block, when fd 1 is stdout again."""
    if not enabled:
        yield
        return
    from edgedistill.gates import error_summary

    try:
        yield
    except EdgeDistillError as exc:
        print(json.dumps(error_summary(command, exc.exit_code, exc.message, exc), indent=2))
        raise
    except KeyboardInterrupt:
        print(json.dumps(error_summary(command, EXIT_INTERRUPTED, "interrupted"), indent=2))
        raise
    except typer.Exit:
        raise  # the command chose its exit code and printed its own document
    except Exception as exc:
        print(json.dumps(error_summary(command, EXIT_INTERNAL, f"internal error: {exc!r}"), indent=2))
        raise


def _with_json_on_error(name: str, command):
    """A mounted subsystem command whose ``--json`` document survives an early stop."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        with _json_on_error(name, bool(kwargs.get("json_out"))):
            return command(*args, **kwargs)

    return run


@targets_app.callback()
def targets_list(ctx: typer.Context) -> None:
    """List the hardware targets."""
    if ctx.invoked_subcommand is not None:
        return
    from edgedistill.hardware.targets import available_targets, load_target

    table = Table(title="targets")
    for col in ("name", "runtime", "delegate", "threads", "precision", "latency ms", "size KB", "memory MB", "device"):
        table.add_column(col)
    for name in available_targets():
        t = load_target(name)
        b = t.budgets
        table.add_row(t.name, t.runtime, t.delegate, str(t.threads), t.precision, f"{b.latency_ms:g}",
                      f"{b.model_size_kb:g}", f"{b.peak_memory_mb:g}", t.device_kind)
    console().print(table)


@targets_app.command("show")
def targets_show(
    name: Annotated[str, typer.Argument(help="Target name or TOML file.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print one target's profile."""
    from edgedistill.hardware.targets import load_target

    with _json_on_error("targets show", json_out), stdout_to_stderr(json_out):
        t = load_target(name)
    if json_out:
        print(json.dumps(t.to_dict(), indent=2))
    else:
        print(f"# {t.path}")
        print(t.path.read_text(), end="")


@app.command("verify")
def verify(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder, e.g. dist/android-arm64.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Re-check a release bundle: every hash, every artifact loads, parity on the stored sample."""
    from edgedistill.verify.bundle import verify_command

    if not json_out:
        raise typer.Exit(verify_command(bundle, json_out))
    # verify_command prints its JSON report itself: collect what it prints, send what the runtimes
    # print natively meanwhile to stderr, then write the report to stdout alone.
    report = io.StringIO()
    with _json_on_error("verify", True), stdout_to_stderr(), contextlib.redirect_stdout(report):
        code = verify_command(bundle, json_out)
    sys.stdout.write(report.getvalue())
    raise typer.Exit(code)


def _mount_subsystem_commands() -> None:
    """Commands that live beside their subsystem (each module keeps its own options)."""
    from edgedistill.bench.cli import bench
    from edgedistill.board.cli import board_app
    from edgedistill.hardware.cli import calibrate
    from edgedistill.select.cli import select

    app.add_typer(board_app, name="board")
    app.command("bench")(_with_json_on_error("bench", bench))
    app.command("select")(_with_json_on_error("select", select))
    app.command("calibrate")(_with_json_on_error("calibrate", calibrate))


_mount_subsystem_commands()


def _quiet_libraries() -> None:
    """Keep stderr for our own progress: the converters' native INFO logs, litert-torch's own
    progress lines and library deprecation warnings say nothing a user can act on. Set before the
    libraries load (they read these once). EDGEDISTILL_DEBUG=1 keeps everything."""
    if os.environ.get("EDGEDISTILL_DEBUG"):
        return
    for name, value in (("TF_CPP_MIN_LOG_LEVEL", "2"), ("GLOG_minloglevel", "2"),
                        ("LITERT_TORCH_SHOW_PROGRESS", "n"), ("TF_ENABLE_ONEDNN_OPTS", "0")):
        os.environ.setdefault(name, value)
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    import logging

    logging.getLogger("torchao").setLevel(logging.ERROR)


def _quiet_torch() -> None:
    """torch installs its own log handlers on import; lower them once it is loaded."""
    if os.environ.get("EDGEDISTILL_DEBUG"):
        return
    import logging

    import torch._logging

    torch._logging.set_logs(all=logging.ERROR)


def main() -> None:
    code = EXIT_INTERNAL  # what a traceback below leaves
    try:
        code = _main()
    finally:
        # Rank 0 of a build under torchrun: the other ranks wait for its exit code.
        if "edgedistill.ranks" in sys.modules:
            sys.modules["edgedistill.ranks"].finish(code)
    sys.exit(code)


def _main() -> int:
    _quiet_libraries()
    # As wide as the progress console when piped (CI logs); soft_wrap below: never wrapped at all.
    err = console(stderr=True)
    # Under torchrun every rank has stderr; say which one speaks (rank 0 speaks for the build).
    who = escape(f"[rank {os.environ['RANK']}] ") if os.environ.get("RANK", "0") != "0" else ""
    interrupted = f"{who}[bold red]interrupted[/]: finished stages are kept in the run directory; rerun to resume"
    args = sys.argv[1:]
    try:
        return _invoke(args)
    except EdgeDistillError as exc:
        # The message quotes file names and library errors: never let rich read them as markup.
        err.print(f"{who}[bold red]error:[/] {escape(exc.message)}"
                  + (f"\n[bold]what to do:[/] {escape(exc.hint)}" if exc.hint else ""), highlight=False,
                  soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print(interrupted)
        return EXIT_INTERRUPTED
    except typer.Exit as exc:
        return exc.exit_code
    except Exception as exc:  # usage errors carry their own exit code
        ClickException, Abort = _click_exceptions()
        if isinstance(exc, ClickException):
            _usage_error_document(exc, args)
            exc.show()
            return exc.exit_code
        if isinstance(exc, Abort):  # click's form of Ctrl-C outside standalone mode
            err.print(interrupted)
            return EXIT_INTERRUPTED
        raise


def _invoke(args: list[str]) -> int:
    """Parse and run the command line; return the command's exit code. Not through ``app()``:
    typer's own main turns Ctrl-C into a silent exit 130 (``typer.core._main``), and the user must
    hear what was kept and that a rerun resumes. So Ctrl-C (and SIGTERM, raised as one), usage
    errors and ``typer.Exit`` all reach :func:`_main` as they are."""
    command = typer.main.get_command(app)
    with command.make_context(_program_name(), list(args)) as ctx:
        code = command.invoke(ctx)
    return code if isinstance(code, int) else 0


def _program_name() -> str:
    """``edgedistill`` as the user typed it (``python -m edgedistill``: the usage line says so)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "edgedistill"
    return "python -m edgedistill" if name in ("__main__.py", "cli.py") else name


def _usage_error_document(exc, args: list[str]) -> None:
    """A usage error (unknown option, bad value, missing argument) of a command run with ``--json``:
    stdout still carries the command's one document, with status ``input_error`` and exit code 2,
    so a pipeline that reads it learns why instead of failing to parse an empty stdout."""
    if "--json" not in args:
        return
    from edgedistill.gates import error_summary

    ctx = getattr(exc, "ctx", None)
    command = ctx.command.name if ctx is not None and ctx.parent is not None else None
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    print(json.dumps(error_summary(command, exc.exit_code, message), indent=2))


def _without_nproc(args: list[str]) -> list[str]:
    """The build's own arguments, for every process torchrun starts: all but ``--nproc N``."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _click_exceptions():
    """typer vendors click as ``typer._click`` in recent releases (its Abort lives beside it);
    older releases use click itself."""
    try:
        from typer._click.exceptions import ClickException
        from typer.exceptions import Abort
    except ImportError:  # pragma: no cover
        from click.exceptions import Abort, ClickException
    return ClickException, Abort


if __name__ == "__main__":  # pragma: no cover
    main()
