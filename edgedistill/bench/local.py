"""Benchmark on this host, in this process, with the same helper the ssh runner ships to boards."""

from __future__ import annotations

from pathlib import Path

from edgedistill.bench import device_bench
from edgedistill.errors import DeviceError


def run_local(model_path: Path, *, threads: int, delegate: str, warmup: int, runs: int,
              runtime: str | None = None) -> dict:
    """The helper's result dict for ``model_path`` run here (see device_bench.benchmark)."""
    try:
        result = device_bench.benchmark(str(model_path), threads, delegate, warmup, runs, runtime)
    except device_bench.BenchError as err:
        raise DeviceError(f"local benchmark of {model_path.name} failed: {err}") from err
    except (RuntimeError, ValueError) as err:  # the runtime refused the model
        raise DeviceError(
            f"local benchmark of {model_path.name} failed in the runtime: {err}",
            hint="try another --delegate (e.g. xnnpack) or check the model with `edgedistill verify`",
        ) from err
    result["device_info"] = device_bench.device_info()
    # This process's peak RSS includes torch and everything else loaded: not the model's.
    result["peak_memory_mb"] = None
    return result
