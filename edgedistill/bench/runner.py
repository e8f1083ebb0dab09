"""bench_model: one model on one device, whatever kind of device; bench_many: on several at once."""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edgedistill.bench import device_bench
from edgedistill.bench.adb import AdbOptions, run_adb
from edgedistill.bench.devices import BENCH_KEYS, parse_device, resolve_device
from edgedistill.bench.errors import TransientDeviceError
from edgedistill.bench.local import run_local
from edgedistill.bench.measurement import BenchRow, Measurement, utc_now
from edgedistill.bench.ssh import SshOptions, run_ssh
from edgedistill.errors import DeviceError, EdgeDistillError, InputError
from edgedistill.fsutil import sha256_file

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".tflite", ".onnx")
DELEGATES = ("xnnpack", "none", "gpu", "nnapi", "cpu")
HELPER_PATH = Path(device_bench.__file__)
_RUNNER_KEYS = {"devices_file", "retries", "backoff_s", "runtime", "emulated"}
_KNOWN_OPTIONS = _RUNNER_KEYS | set(SshOptions.__dataclass_fields__) | {"connect_timeout"} | set(
    AdbOptions.__dataclass_fields__
)
# Result keys that become Measurement fields; everything else the runner reports goes to extra.
_RESULT_FIELDS = ("runtime", "runtime_version", "threads", "delegate", "warmup", "runs", "median_ms", "p90_ms",
                  "mean_ms", "std_ms", "peak_memory_mb", "init_ms", "first_inference_ms", "device_info")


def bench_model(model_path: str | os.PathLike[str], device: str = "local", *, threads: int | None = None,
                delegate: str | None = None, warmup: int | None = None, runs: int | None = None,
                timeout_s: float | None = None, **device_options: Any) -> Measurement:
    """Benchmark ``model_path`` on ``device`` (a spec or a devices.toml name) and return the measurement.

    Defaults (used where neither the call nor the device's devices.toml entry says otherwise):
    threads=1, delegate="xnnpack" for .tflite and "cpu" for .onnx, warmup=10, runs=100,
    timeout_s=300. ``device_options``: ``devices_file``, ``retries`` (1), ``backoff_s`` (2.0),
    ``runtime``; for ssh ``ssh_config``, ``python``, ``connect_timeout_s``, ``host_key_check``;
    for adb ``benchmark_binary``. Connection failures are retried ``retries`` times with back-off.
    Raises InputError for a bad model or option, DeviceError when the device fails.
    """
    model = check_model(model_path)
    unknown = set(device_options) - _KNOWN_OPTIONS
    if unknown:
        raise InputError(f"unknown bench option(s): {', '.join(sorted(unknown))}")
    named = resolve_device(device, device_options.get("devices_file"))
    spec = parse_device(named.spec)
    settings = {"threads": 1, "delegate": "cpu" if model.suffix.lower() == ".onnx" else "xnnpack",
                "warmup": 10, "runs": 100, "timeout_s": 300.0}
    settings.update({k: v for k, v in named.options.items() if k in BENCH_KEYS})
    explicit = {"threads": threads, "delegate": delegate, "warmup": warmup, "runs": runs, "timeout_s": timeout_s}
    settings.update({k: v for k, v in explicit.items() if v is not None})
    options = {**{k: v for k, v in named.options.items() if k not in BENCH_KEYS}, **device_options}
    _check_settings(settings)

    retries = int(options.pop("retries", 1))
    backoff_s = float(options.pop("backoff_s", 2.0))
    options.pop("devices_file", None)
    emulated = bool(options.pop("emulated", False))
    attempt_once = _attempt_for(spec, model, settings, options)

    sha256 = sha256_file(model)
    failures: list[DeviceError] = []
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            result = attempt_once()
            break
        except TransientDeviceError as err:
            log.info("%s: attempt %d failed: %s", spec.text, attempt + 1, err)
            failures.append(err)
    else:
        last, first = failures[-1], failures[0]
        if len(failures) == 1:
            message = last.message
        elif first.message == last.message:
            message = f"{last.message} (after {len(failures)} attempts, each the same)"
        else:
            message = f"{last.message} (after {len(failures)} attempts; first: {first.message})"
        raise DeviceError(message, hint=last.hint)
    m = _measurement(model, sha256, spec.text, spec.kind == "local", result)
    m.emulated = emulated
    return m


def bench_many(model_path: str | os.PathLike[str], devices: list[str], **kw: Any) -> list[BenchRow]:
    """bench_model on every device in parallel threads; a failing device gets a row with its reason."""
    check_model(model_path)
    if not devices:
        raise InputError("no devices to benchmark on", hint="pass --device at least once")

    def one(device: str) -> BenchRow:
        try:
            return BenchRow(device, measurement=bench_model(model_path, device, **kw))
        except EdgeDistillError as err:
            return BenchRow(device, error=str(err))
        except Exception as err:  # a bug must not take the other devices' rows with it
            log.exception("%s: unexpected failure", device)
            return BenchRow(device, error=f"internal error: {type(err).__name__}: {err}")

    with ThreadPoolExecutor(max_workers=len(devices), thread_name_prefix="bench") as pool:
        return list(pool.map(one, devices))


def check_model(model_path: str | os.PathLike[str]) -> Path:
    model = Path(model_path).expanduser()
    if not model.is_file():
        raise InputError(f"model file not found: {model}", hint="pass the path of an exported .tflite or .onnx")
    if model.suffix.lower() not in MODEL_SUFFIXES:
        raise InputError(f"cannot benchmark {model.name}: expected a .tflite or .onnx file")
    return model


def inspect_model(model_path: str | os.PathLike[str]) -> Path:
    """:func:`check_model`, then a look inside, before any runner is given the file: a .tflite must
    carry the TFLite flatbuffer identifier and an .onnx must parse as an ONNX model with outputs.
    Raises InputError naming the file and what is wrong with it."""
    model = check_model(model_path)
    hint = "pass a .tflite or .onnx file exported by `edgedistill build` or a converter"
    if model.stat().st_size == 0:
        raise InputError(f"{model}: the file is empty, not a model", hint=hint)
    if model.suffix.lower() == ".tflite":
        with open(model, "rb") as handle:
            head = handle.read(8)
        if len(head) < 8 or head[4:8] != b"TFL3":
            raise InputError(f"{model}: not a TFLite model (no TFL3 flatbuffer identifier at bytes 4-8)", hint=hint)
        return model
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is a dependency; the runner still checks
        return model
    try:
        proto = onnx.load(str(model), load_external_data=False)
    except Exception as err:  # protobuf's DecodeError and friends
        raise InputError(f"{model}: not an ONNX model ({type(err).__name__}: {err})", hint=hint) from err
    if proto.ir_version <= 0 or not proto.graph.output:
        raise InputError(f"{model}: not an ONNX model (no IR version or graph outputs)", hint=hint)
    return model


def _check_settings(s: dict) -> None:
    if not isinstance(s["threads"], int) or s["threads"] < 1:
        raise InputError(f"threads must be a whole number >= 1, not {s['threads']!r}")
    if not isinstance(s["runs"], int) or s["runs"] < 1:
        raise InputError(f"runs must be a whole number >= 1, not {s['runs']!r}")
    if not isinstance(s["warmup"], int) or s["warmup"] < 0:
        raise InputError(f"warmup must be a whole number >= 0, not {s['warmup']!r}")
    if s["delegate"] not in DELEGATES:
        raise InputError(f"unknown delegate {s['delegate']!r}; use one of {', '.join(DELEGATES)}")
    if float(s["timeout_s"]) <= 0:
        raise InputError(f"timeout must be positive, not {s['timeout_s']!r}")


def _attempt_for(spec, model: Path, settings: dict, options: dict):
    """A no-argument callable doing one attempt on this kind of device."""
    common = {k: settings[k] for k in ("threads", "delegate", "warmup", "runs")}
    if spec.kind == "local":
        runtime = options.get("runtime")
        return lambda: run_local(model, runtime=runtime, **common)
    if spec.kind == "ssh":
        opts = SshOptions.from_kwargs(dict(options))
        return lambda: run_ssh(spec, model, HELPER_PATH, timeout_s=float(settings["timeout_s"]), opts=opts, **common)
    opts = AdbOptions.from_kwargs(dict(options))
    return lambda: run_adb(spec, model, timeout_s=float(settings["timeout_s"]), opts=opts, **common)


def _measurement(model: Path, sha256: str, device: str, is_host: bool, result: dict) -> Measurement:
    fields = {k: result.get(k) for k in _RESULT_FIELDS}
    extra = {k: v for k, v in result.items() if k not in _RESULT_FIELDS and k != "ok" and v is not None}
    return Measurement(
        model_file=model.name,
        model_sha256=sha256,
        model_bytes=model.stat().st_size,
        device=device,
        is_host=is_host,
        timestamp=utc_now(),
        extra=extra,
        **fields,
    )
