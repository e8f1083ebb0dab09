"""``edgedistill calibrate``: a thin typer command over :mod:`edgedistill.hardware.calibrate`.

Mount it on the main app with ``app.command("calibrate")(calibrate)``; :func:`calibrate_command`
does the work and returns the exit code, for callers and tests.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgedistill.errors import EXIT_OK
from edgedistill.streams import stdout_to_stderr


def calibrate_command(
    target: Annotated[str, typer.Option(help="Target whose latency model to fit; its device must be this host.")] = "host",
    quick: Annotated[bool, typer.Option("--quick", help="Three small models, int8 only, 50 runs (for tests).")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Write the fitted model here [default: <cache>/calibration/TARGET.json].")] = None,
    write_repo: Annotated[bool, typer.Option("--write-repo", help="Rewrite the repository's calibration/TARGET.json.")] = False,
    store: Annotated[Optional[Path], typer.Option(help="Latency store (JSONL) [default: $EDGEDISTILL_LATENCY_STORE or <cache>/latency_store.jsonl].")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the fitted model as JSON.")] = False,
) -> int:
    """Benchmark generated resnet/mobilenet/vit models on this host and fit TARGET's latency model."""
    from edgedistill.bench import LatencyStore
    from edgedistill.errors import InputError
    from edgedistill.hardware.calibrate import calibrate as run_calibrate
    from edgedistill.hardware.targets import load_target

    t = load_target(target)
    if t.device_kind != "local":
        raise InputError(f"target {t.name} runs on a {t.device_kind} device, not this host",
                         hint="calibrate measures here; use --target host, or measure on the device and refit")
    say = (lambda s: None) if json_out else (lambda s: print(s, flush=True))
    kw = {"precisions": ("int8",), "runs": 50, "warmup": 10} if quick else {}
    with stdout_to_stderr(json_out):  # the exporters print progress; with --json stdout is the JSON's
        result = run_calibrate(t, quick=quick, out=out, write_repo_file=write_repo, store=LatencyStore(store),
                               progress=say, **kw)
    if json_out:
        print(json.dumps({"path": str(result.path), "latency_model": result.model.to_dict()}, indent=2))
    else:
        for p, s in result.model.fit_summary.items():
            print(f"{p}: fitted on {s['n']} measurements, median |error| {s['median_abs_pct_err']:.1f}% (in-sample)")
        print(f"wrote {result.path} ({result.seconds:.0f} s)")
    return EXIT_OK


@functools.wraps(calibrate_command)
def calibrate(*args, **kwargs) -> None:
    """Benchmark generated resnet/mobilenet/vit models on this host and fit TARGET's latency model."""
    raise typer.Exit(calibrate_command(*args, **kwargs))
