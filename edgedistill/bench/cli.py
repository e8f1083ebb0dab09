"""``edgedistill bench``: benchmark a model on one or more devices, or list past measurements.

Mount it on the main app with :func:`bench` (raises ``typer.Exit`` with the exit code);
:func:`bench_command` is the same thing returning the code, for callers and tests.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgedistill.bench.measurement import BenchRow, Measurement
from edgedistill.bench.runner import bench_many, bench_model, check_model, inspect_model
from edgedistill.bench.store import LatencyStore
from edgedistill.errors import EXIT_DEVICE, EXIT_OK, InputError
from edgedistill.fsutil import sha256_file
from edgedistill.streams import stdout_to_stderr


def bench_command(
    model: Annotated[Optional[Path], typer.Argument(help="The .tflite or .onnx file to benchmark.")] = None,
    device: Annotated[Optional[list[str]], typer.Option(
        "--device", "-d",
        help="local, ssh://[user@]host[:port], ssh://ALIAS, adb[:SERIAL], or a devices.toml name. "
             "Repeat to benchmark on several devices in parallel [default: local].")] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="Inference threads [default: 1].")] = None,
    delegate: Annotated[Optional[str], typer.Option(
        help="xnnpack | none (builtin kernels) | gpu | nnapi (adb) | cpu (onnxruntime) "
             "[default: xnnpack for .tflite, cpu for .onnx].")] = None,
    warmup: Annotated[Optional[int], typer.Option(min=0, help="Untimed warm-up runs [default: 10].")] = None,
    runs: Annotated[Optional[int], typer.Option(min=1, help="Timed runs [default: 100].")] = None,
    timeout: Annotated[Optional[float], typer.Option(
        help="Seconds one device may take to run the benchmark [default: 300].")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    history: Annotated[bool, typer.Option(
        "--history", help="List stored measurements (of MODEL only, if given) instead of benchmarking.")] = False,
    devices_file: Annotated[Optional[Path], typer.Option(
        help="devices.toml naming devices [default: $EDGEDISTILL_DEVICES or ./devices.toml].")] = None,
    no_host_key_check: Annotated[bool, typer.Option(
        "--no-host-key-check", help="ssh: do not check or record host keys (throwaway boards only).")] = False,
    ssh_config: Annotated[Optional[Path], typer.Option(
        help="ssh: client config passed as ssh -F [default: ~/.ssh/config].")] = None,
    python: Annotated[Optional[str], typer.Option(
        help="ssh: the board's python interpreter [default: python3].")] = None,
    benchmark_binary: Annotated[Optional[Path], typer.Option(
        help="adb: TFLite benchmark_model built for the device's ABI [default: the device's benchmark_binary in "
             "devices.toml].")] = None,
    store: Annotated[Optional[Path], typer.Option(
        help="Latency store (JSONL) [default: $EDGEDISTILL_LATENCY_STORE or <cache>/latency_store.jsonl].")] = None,
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not record these measurements.")] = False,
) -> int:
    """Benchmark MODEL on each --device and print one row per device."""
    latency_store = LatencyStore(store)
    if history:
        return _print_history(latency_store, model, json_out)
    if model is None:
        raise InputError("no model given", hint="edgedistill bench MODEL --device DEVICE, or --history")
    inspect_model(model)  # a file that is not a model is bad input (exit 2), whatever the device

    options: dict = {"threads": threads, "delegate": delegate, "warmup": warmup, "runs": runs, "timeout_s": timeout}
    options = {k: v for k, v in options.items() if v is not None}
    if devices_file is not None:
        options["devices_file"] = devices_file
    if no_host_key_check:
        options["host_key_check"] = False
    if ssh_config is not None:
        options["ssh_config"] = str(ssh_config)
    if python is not None:
        options["python"] = python
    if benchmark_binary is not None:
        options["benchmark_binary"] = str(benchmark_binary)

    devices = list(device or ["local"])
    with stdout_to_stderr(json_out):  # runtimes' own prints must not land in the JSON
        if len(devices) == 1:
            # One device: its error is the command's, with its own exit code and hint.
            rows = [BenchRow(devices[0], measurement=bench_model(model, devices[0], **options))]
        else:
            rows = bench_many(model, devices, **options)
    if not no_store:
        for row in rows:
            if row.measurement is not None:
                latency_store.append(row.measurement)

    if json_out:
        payload = rows[0].measurement.to_dict() if len(rows) == 1 else [row.to_dict() for row in rows]
        print(json.dumps(payload, indent=2))
    else:
        Console().print(results_table(rows, model.name))
    return EXIT_OK if all(row.ok for row in rows) else EXIT_DEVICE


@functools.wraps(bench_command)
def bench(*args, **kwargs) -> None:
    """Benchmark MODEL on each --device and print one row per device."""
    raise typer.Exit(bench_command(*args, **kwargs))


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value >= 0.1 else f"{value:.4f}"


def results_table(rows: list[BenchRow], title: str) -> Table:
    table = Table(title=f"{title}: latency per device (ms, batch 1 unless noted)")
    for name, justify in (("device", "left"), ("runtime", "left"), ("median", "right"), ("p90", "right"),
                          ("mean ± std", "right"), ("peak MB", "right"), ("status", "left")):
        table.add_column(name, justify=justify)
    for row in rows:
        m = row.measurement
        if m is None:
            table.add_row(row.device, "-", "-", "-", "-", "-", f"[red]failed: {escape(row.error or '')}[/red]")
            continue
        board = m.device_info.get("model") or m.device_info.get("soc")
        device = f"{m.device}\n[dim]{escape(str(board))}[/dim]" if board else m.device
        runtime = f"{m.runtime} {m.runtime_version}\n[dim]{m.threads} thread(s), {m.delegate}[/dim]"
        status = "ok"
        if m.extra.get("batch", 1) != 1:
            status = f"ok (batch {m.extra['batch']})"
        if m.extra.get("p90_estimated"):
            status += ", p90 estimated"
        table.add_row(device, runtime, _ms(m.median_ms), _ms(m.p90_ms), f"{_ms(m.mean_ms)} ± {_ms(m.std_ms)}",
                      f"{m.peak_memory_mb:.1f}" if m.peak_memory_mb is not None else "-", status)
    return table


def _print_history(store: LatencyStore, model: Optional[Path], json_out: bool) -> int:
    records: list[Measurement] = store.records()
    if model is not None:
        sha = sha256_file(check_model(model))
        records = [m for m in records if m.model_sha256 == sha]
    if json_out:
        print(json.dumps([m.to_dict() for m in records], indent=2))
        return EXIT_OK
    if not records:
        print(f"no measurements in {store.path}" + (f" for {model.name}" if model else ""), file=sys.stderr)
        return EXIT_OK
    table = Table(title=f"latency history ({store.path})")
    for name in ("when (UTC)", "model", "sha256", "device", "runtime", "threads", "delegate", "median ms", "p90 ms"):
        table.add_column(name, justify="right" if name in ("threads", "median ms", "p90 ms") else "left")
    for m in records:
        table.add_row(m.timestamp, m.model_file, m.model_sha256[:12], m.device, f"{m.runtime} {m.runtime_version}",
                      str(m.threads), m.delegate, _ms(m.median_ms), _ms(m.p90_ms))
    Console().print(table)
    return EXIT_OK
