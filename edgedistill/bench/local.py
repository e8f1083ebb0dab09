"""Benchmark on this host, in this process, with the same helper the ssh runner ships to boards."""

from __future__ import annotations

from pathlib import Path

from edgedistill.bench import device_bench
from edgedistill.errors import DeviceError, InputError
from edgedistill.streams import quiet_native_stderr


def run_local(model_path: Path, *, threads: int, delegate: str, warmup: int, runs: int,
              runtime: str | None = None) -> dict:
    """The helper's result dict for ``model_path`` run here (see device_bench.benchmark).

    A file the runtime cannot load is bad input (InputError); a failure after it loaded is the
    device's (DeviceError)."""
    try:
        result = device_bench.benchmark(str(model_path), threads, delegate, warmup, runs, runtime,
                                        load_guard=quiet_native_stderr)
    except device_bench.ModelLoadError as err:
        raise InputError(f"{model_path}: {err.runtime} cannot load it ({err.reason})",
                         hint="pass a .tflite or .onnx file exported by `edgedistill build` or a converter") from err
    except device_bench.BenchError as err:
        raise DeviceError(f"local benchmark of {model_path.name} failed: {err}") from err
    except (RuntimeError, ValueError) as err:  # the runtime loaded the model but could not run it
        hint = None
        if model_path.suffix.lower() == ".tflite":  # rule the delegate in or out
            hint = "try --delegate none (builtin kernels)" if delegate == "xnnpack" else "try --delegate xnnpack"
        raise DeviceError(f"local benchmark of {model_path.name} failed in the runtime: {err}", hint=hint) from err
    result["device_info"] = device_bench.device_info()
    # This process's peak RSS includes torch and everything else loaded: not the model's.
    result["peak_memory_mb"] = None
    return result
