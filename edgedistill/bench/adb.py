"""Benchmark on Android over adb with TFLite's own ``benchmark_model`` binary.

The user supplies the binary built for the device's ABI (``--benchmark-binary`` or
``benchmark_binary`` in devices.toml: one path, or a table ``{"arm64-v8a" = "...", ...}``).
We push it and the model into a fresh ``/data/local/tmp/edgedistill-*`` directory, run it with
the requested threads and delegate, parse its log, and remove the directory in ``finally``.

``adb shell`` hands its words to the device's ``sh``, so the remote command is one string in which
every word went through ``shlex.quote``; ``adb push`` takes paths as argv and needs no quoting.
Everything that builds an argv here is a pure function, testable without a device.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from edgedistill.bench.benchmark_model_output import (
    BenchmarkModelOutputError,
    BenchmarkModelResult,
    parse_benchmark_model_output,
)
from edgedistill.bench.devices import DeviceSpec
from edgedistill.bench.errors import TransientDeviceError
from edgedistill.errors import DeviceError, InputError
from edgedistill.fsutil import sha256_file

REMOTE_BASE = "/data/local/tmp"
DELEGATE_FLAGS = {
    "xnnpack": ["--use_xnnpack=true"],
    "none": ["--use_xnnpack=false"],
    "gpu": ["--use_gpu=true"],
    "nnapi": ["--use_nnapi=true"],
}


@dataclass
class AdbOptions:
    benchmark_binary: str | dict | None = None  # a path, or {abi: path}
    adb_binary: str = "adb"
    remote_base: str = REMOTE_BASE

    @classmethod
    def from_kwargs(cls, kw: dict) -> "AdbOptions":
        return cls(**{k: kw.pop(k) for k in list(kw) if k in cls.__dataclass_fields__})


# --- argv construction (pure) -------------------------------------------------------------------


def adb_base(serial: str | None, adb: str = "adb") -> list[str]:
    return [adb, "-s", serial] if serial else [adb]


def adb_shell_argv(serial: str | None, words: list[str], adb: str = "adb") -> list[str]:
    """``adb shell`` running ``words`` as one quoted command line (the device's sh splits it)."""
    return [*adb_base(serial, adb), "shell", shlex.join(words)]


def adb_push_argv(serial: str | None, local: Path, remote: str, adb: str = "adb") -> list[str]:
    return [*adb_base(serial, adb), "push", str(local), remote]


def benchmark_model_words(binary: str, model: str, *, threads: int, delegate: str, warmup: int,
                          runs: int, max_secs: float) -> list[str]:
    """benchmark_model's argv on the device: exactly ``warmup`` + ``runs`` invokes, peak memory on."""
    if delegate not in DELEGATE_FLAGS:
        raise InputError(f"delegate {delegate!r} is not a benchmark_model option; use one of {sorted(DELEGATE_FLAGS)}")
    return [
        binary,
        f"--graph={model}",
        f"--num_threads={threads}",
        f"--warmup_runs={warmup}",
        "--warmup_min_secs=0",  # default 0.5 s would add untracked warm-up runs
        f"--num_runs={runs}",
        "--min_secs=0",  # default 1 s would add runs beyond the requested count
        f"--max_secs={max_secs:g}",
        "--report_peak_memory_footprint=true",
        *DELEGATE_FLAGS[delegate],
    ]


def run_words(remote_dir: str, binary_name: str, model_name: str, **kw) -> list[str]:
    return benchmark_model_words(f"{remote_dir}/{binary_name}", f"{remote_dir}/{model_name}", **kw)


def parse_getprop(text: str) -> dict[str, str]:
    """``adb shell getprop`` lines ``[key]: [value]`` as a dict."""
    return dict(re.findall(r"^\[([^\]]+)\]:\s*\[(.*)\]\s*$", text, re.MULTILINE))


def device_info_from_props(props: dict[str, str], kernel: str | None) -> dict:
    release = props.get("ro.build.version.release")
    sdk = props.get("ro.build.version.sdk")
    return {
        "model": " ".join(x for x in (props.get("ro.product.manufacturer"), props.get("ro.product.model")) if x)
        or None,
        "soc": props.get("ro.soc.model") or props.get("ro.board.platform") or props.get("ro.hardware"),
        "os": f"Android {release} (SDK {sdk})" if release else None,
        "kernel": kernel,
        "machine": props.get("ro.product.cpu.abi"),
        "abi": props.get("ro.product.cpu.abi"),
        "fingerprint": props.get("ro.build.fingerprint"),
    }


def pick_binary(benchmark_binary: str | dict | None, abi: str | None, device: str) -> Path:
    """The local benchmark_model for this ABI; InputError saying what to pass when there is none."""
    hint = ("build or download TFLite's benchmark_model for the device's ABI and pass --benchmark-binary PATH, "
            "or set benchmark_binary for this device in devices.toml")
    if benchmark_binary is None:
        raise InputError(f"{device}: no benchmark_model binary given", hint=hint)
    if isinstance(benchmark_binary, dict):
        if abi not in benchmark_binary:
            raise InputError(f"{device}: no benchmark_model for ABI {abi!r} (have {sorted(benchmark_binary)})",
                             hint=hint)
        chosen = benchmark_binary[abi]
    else:
        chosen = benchmark_binary
    path = Path(chosen).expanduser()
    if not path.is_file():
        raise InputError(f"{device}: benchmark_model binary not found: {path}", hint=hint)
    return path


# --- running ------------------------------------------------------------------------------------


# adb's own words for a device that is not (or no longer) there: worth one retry.
_DEVICE_GONE = re.compile(r"device offline|no devices/emulators found|device '[^']*' not found|"
                          r"device still connecting|connection reset|protocol fault", re.IGNORECASE)


def _adb(argv: list[str], timeout_s: float, device: str, step: str) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as err:
        raise DeviceError(f"{device}: no answer within {timeout_s:g} s while trying to {step}") from err
    except FileNotFoundError as err:
        raise DeviceError(f"{device}: {argv[0]} is not installed here",
                          hint="apt-get install adb, or put adb on PATH") from err
    # adb's "* daemon not running; starting now" chatter is not the reason for anything.
    done.stderr = "\n".join(line for line in (done.stderr or "").splitlines() if not line.startswith("* "))
    if done.returncode != 0 and _DEVICE_GONE.search(done.stderr):
        raise TransientDeviceError(f"{device}: {step} failed: {done.stderr.strip()}",
                                   hint="check that `adb devices` lists it as 'device'")
    return done


def list_adb_devices(adb: str = "adb", timeout_s: float = 10) -> list[str]:
    """Serials that ``adb devices`` lists as ready (state ``device``)."""
    try:
        done = subprocess.run([adb, "devices"], capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_adb_devices(done.stdout)


def parse_adb_devices(text: str) -> list[str]:
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[1] == "device":
            out.append(parts[0])
    return out


def run_adb(spec: DeviceSpec, model_path: Path, *, threads: int, delegate: str, warmup: int, runs: int,
            timeout_s: float, opts: AdbOptions) -> dict:
    """One attempt: a result dict in the helper's shape, built from benchmark_model's log."""
    device, serial, adb = spec.text, spec.serial, opts.adb_binary
    if model_path.suffix.lower() != ".tflite":
        raise InputError(f"{device}: benchmark_model runs .tflite models only, not {model_path.name}")
    short = 60.0
    props_run = _adb(adb_shell_argv(serial, ["getprop"], adb), short, device, "read device properties")
    if props_run.returncode != 0:
        raise TransientDeviceError(f"{device}: adb cannot reach the device ({props_run.stderr.strip()})")
    props = parse_getprop(props_run.stdout)
    kernel = _adb(adb_shell_argv(serial, ["uname", "-r"], adb), short, device, "read the kernel").stdout.strip()
    info = device_info_from_props(props, kernel or None)
    binary = pick_binary(opts.benchmark_binary, info.get("abi"), device)

    remote_dir = f"{opts.remote_base}/edgedistill-{uuid.uuid4().hex[:12]}"
    made = _adb(adb_shell_argv(serial, ["mkdir", "-p", remote_dir], adb), short, device, "create a directory")
    if made.returncode != 0:
        raise DeviceError(f"{device}: cannot create {remote_dir}: {made.stderr.strip() or made.stdout.strip()}")
    try:
        for local, name in ((binary, "benchmark_model"), (model_path, model_path.name)):
            pushed = _adb(adb_push_argv(serial, local, f"{remote_dir}/{name}", adb), short + local.stat().st_size / 1e6,
                          device, f"push {local.name}")
            if pushed.returncode != 0:
                raise DeviceError(f"{device}: adb push {local} failed: {pushed.stderr.strip()}")
        _adb(adb_shell_argv(serial, ["chmod", "755", f"{remote_dir}/benchmark_model"], adb), short, device, "chmod")
        words = run_words(remote_dir, "benchmark_model", model_path.name, threads=threads, delegate=delegate,
                          warmup=warmup, runs=runs, max_secs=max(1.0, timeout_s - 10))
        ran = _adb(adb_shell_argv(serial, [*words], adb), timeout_s, device, "run benchmark_model")
        try:
            parsed = parse_benchmark_model_output(ran.stdout + "\n" + ran.stderr)
        except BenchmarkModelOutputError as err:
            raise DeviceError(f"{device}: {err}") from err
    finally:
        _adb_quietly(adb_shell_argv(serial, ["rm", "-rf", remote_dir], adb), short)
    return result_from_benchmark_model(parsed, info, threads=threads, delegate=delegate, warmup=warmup,
                                       runs=runs, binary_sha256=sha256_file(binary))


def _adb_quietly(argv: list[str], timeout_s: float) -> None:
    try:
        subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        pass


# A normal distribution's 90th percentile is mean + 1.2816 std: the estimate when the log has no p90.
_Z90 = 1.2816


def result_from_benchmark_model(parsed: BenchmarkModelResult, info: dict, *, threads: int, delegate: str,
                                warmup: int, runs: int, binary_sha256: str) -> dict:
    """benchmark_model gives summary statistics only: median when it prints one, p90 estimated."""
    mean_ms = parsed.inference_avg_us / 1e3
    std_ms = (parsed.std_us or 0.0) / 1e3
    p90_ms = mean_ms + _Z90 * std_ms
    if parsed.max_us is not None:
        p90_ms = min(p90_ms, parsed.max_us / 1e3)
    notes = ["p90 estimated as mean + 1.2816 std (benchmark_model prints no p90)"]
    if parsed.median_us is None:
        notes.append("median is the mean (this benchmark_model prints no median)")
    return {
        "ok": True,
        "runtime": "benchmark_model",
        "runtime_version": f"sha256:{binary_sha256[:16]}",  # the binary prints no version
        "threads": threads,
        "delegate": delegate,
        "warmup": parsed.warmup_count if parsed.warmup_count is not None else warmup,
        "runs": parsed.count if parsed.count is not None else runs,
        "median_ms": parsed.median_us / 1e3 if parsed.median_us is not None else mean_ms,
        "p90_ms": p90_ms,
        "mean_ms": mean_ms,
        "std_ms": std_ms,
        "min_ms": parsed.min_us / 1e3 if parsed.min_us is not None else None,
        "max_ms": parsed.max_us / 1e3 if parsed.max_us is not None else None,
        "init_ms": parsed.init_us / 1e3,
        "first_inference_ms": parsed.first_inference_us / 1e3,
        "warmup_mean_ms": parsed.warmup_avg_us / 1e3,
        "peak_memory_mb": parsed.peak_memory_mb,
        "memory_delta_mb": parsed.memory_delta_mb,
        "p90_estimated": True,
        "median_estimated": parsed.median_us is None,
        "notes": notes,
        "device_info": info,
    }
