#!/usr/bin/env python3
"""Benchmark one .tflite or .onnx model on the machine this runs on and print one JSON object.

This file is the device-side helper: the ssh runner copies it, unchanged, to a board and runs it
with the board's own python3, and the local runner imports it, so both paths time a model in
exactly the same way. It must therefore stay self-contained: standard library, numpy, and
whichever runtime it finds (``ai_edge_litert``, ``tflite_runtime`` or ``tensorflow`` for .tflite,
``onnxruntime`` for .onnx). Never import edgedistill from here.

    python3 device_bench.py MODEL [--threads N] [--delegate D] [--warmup W] [--runs R]
    python3 device_bench.py MODEL --predict INPUTS.npy [--delegate D]   # outputs, batch 1 each

It reports the runtime, its version, the delegate and whether it was applied (asked for and not
applied is an error, not a silent fallback), and the CPU's features. It prints ``{"ok": true, ...}``
and exits 0, or ``{"ok": false, "error": ...}`` and exits 2; runtime logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import operator
import os
import platform
import sys
import time

HELPER_VERSION = 1

TFLITE_RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")
ONNX_RUNTIMES = ("onnxruntime",)
TFLITE_DELEGATES = ("xnnpack", "none")
ONNX_DELEGATES = ("cpu", "none", "xnnpack")


class BenchError(Exception):
    """A failure to report to the caller as ``{"ok": false, "error": ...}``."""


class ModelLoadError(BenchError):
    """The runtime could not load the model file: not a model, corrupt, or one it cannot read."""

    def __init__(self, runtime: str, model_path: str, err: Exception) -> None:
        self.runtime = runtime
        self.reason = f"{type(err).__name__}: {err}"
        super().__init__(f"{runtime} cannot load {os.path.basename(model_path)}: {self.reason}")


# --- statistics ---------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of already sorted values."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize_ns(times_ns: list[int]) -> dict:
    """Median / p90 / mean / population std, in milliseconds, of per-invoke times in ns."""
    ms = sorted(t / 1e6 for t in times_ns)
    mean = sum(ms) / len(ms)
    std = math.sqrt(sum((v - mean) ** 2 for v in ms) / len(ms))
    return {
        "median_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "mean_ms": mean,
        "std_ms": std,
        "min_ms": ms[0],
        "max_ms": ms[-1],
    }


# --- device identity ----------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return handle.read().replace(b"\x00", b"\n").decode("utf-8", "replace").strip() or None
    except OSError:
        return None


def _cpuinfo_field(cpuinfo: str, *keys: str) -> str | None:
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in keys and value.strip():
            return value.strip()
    return None


def _os_release() -> str | None:
    text = _read("/etc/os-release") or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return None


def device_info() -> dict:
    """What the machine says it is: board model, SoC, OS, kernel, CPU architecture."""
    uname = platform.uname()
    cpuinfo = _read("/proc/cpuinfo") or ""
    compatible = _read("/proc/device-tree/compatible")
    soc = _cpuinfo_field(cpuinfo, "hardware")
    if soc is None and compatible:
        soc = compatible.splitlines()[-1]  # most generic entry last, e.g. "brcm,bcm2711"
    cpu = _cpuinfo_field(cpuinfo, "model name", "cpu model", "processor name")
    board = _cpuinfo_field(cpuinfo, "model")  # "Raspberry Pi 4 Model B"; on x86 a CPU model number
    model = (
        _read("/proc/device-tree/model")
        or (board if board and not board.isdigit() else None)
        or _read("/sys/devices/virtual/dmi/id/product_name")
    )
    return {
        "model": model,
        "soc": soc or cpu,
        "cpu": cpu,
        "os": _os_release() or f"{uname.system} {uname.release}",
        "kernel": uname.release,
        "machine": uname.machine,
        "hostname": uname.node,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "cpu_features": _cpuinfo_field(cpuinfo, "features"),  # aarch64: asimd, asimddp, sve, lse ...
    }


# --- inputs -------------------------------------------------------------------------------------


def random_input(shape, dtype, rng):
    """Random data of the input's dtype: full-range integers for quantized inputs, N(0,1) floats."""
    import numpy as np

    dtype = np.dtype(dtype)
    shape = tuple(int(d) for d in shape)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        lo, hi = (info.min, info.max) if info.bits <= 16 else (0, 127)
        return rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype)
    return rng.standard_normal(size=shape).astype(dtype)


def _known_dim(d) -> int | None:
    """A positive integer dim (Python or numpy integer) or None; numpy stays a lazy import."""
    try:
        value = operator.index(d)
    except TypeError:
        return None
    return value if value > 0 else None


def batch_one_shape(shape) -> list[int]:
    """The shape to feed: unknown dims (None, -1, symbolic names) become 1, and so does the batch.
    LiteRT reports shapes as numpy int32 arrays, so numpy integers count as known dims."""
    dims = [_known_dim(d) or 1 for d in shape]
    if dims:
        dims[0] = 1
    return dims


# --- runtimes -----------------------------------------------------------------------------------


def _import_tflite(preferred: str | None):
    """The first importable TFLite interpreter module, as (name, module, version)."""
    names = (preferred,) if preferred else TFLITE_RUNTIMES
    errors = []
    for name in names:
        try:
            if name == "ai_edge_litert":
                from ai_edge_litert import interpreter as module
            elif name == "tflite_runtime":
                from tflite_runtime import interpreter as module
            elif name == "tensorflow":
                import tensorflow as tf

                module = tf.lite
                module.OpResolverType = tf.lite.experimental.OpResolverType
            else:
                raise BenchError(f"unknown TFLite runtime {name!r}; use one of {TFLITE_RUNTIMES}")
        except ImportError as err:
            errors.append(f"{name}: {err}")
            continue
        return name, module, _package_version(name)
    raise BenchError(
        "no TFLite runtime found (" + "; ".join(errors) + "); install one on the device, "
        "e.g. `pip install ai-edge-litert` (or tflite-runtime with numpy<2)"
    )


def _package_version(name: str) -> str:
    dist = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}.get(name, name)
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        module = sys.modules.get(name)
        return str(getattr(module, "__version__", "unknown"))


class _TfliteSession:
    def __init__(self, model_path: str, threads: int, delegate: str, runtime: str | None):
        if delegate not in TFLITE_DELEGATES:
            raise BenchError(
                f"delegate {delegate!r} is not available to the Python interpreter; use one of "
                f"{TFLITE_DELEGATES} here (gpu and nnapi run through adb's benchmark_model)"
            )
        self.runtime, module, self.runtime_version = _import_tflite(runtime)
        self.delegate = delegate
        self.notes: list[str] = []
        kwargs = {"model_path": model_path, "num_threads": threads}
        if delegate == "none":
            kwargs["experimental_op_resolver_type"] = (
                module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            )
        self.interpreter = self._allocate(module, kwargs)
        ops = getattr(self.interpreter, "_get_ops_details", None)  # a delegate shows as a DELEGATE node
        self.delegate_applied = None if ops is None else any(op.get("op_name") == "DELEGATE" for op in ops())
        if delegate == "xnnpack" and self.delegate_applied is False:
            raise BenchError(f"XNNPACK was asked for but {self.runtime} {self.runtime_version} did not apply it (no op "
                             "of this model it takes here, or no /sys); --delegate none times the builtin kernels")
        self.inputs = self.interpreter.get_input_details()
        self.batch = int(self.inputs[0]["shape"][0]) if len(self.inputs[0]["shape"]) else 1

    def _allocate(self, module, kwargs):
        try:
            interpreter = module.Interpreter(**kwargs)
        except (RuntimeError, ValueError) as err:  # not a flatbuffer, or ops this runtime lacks
            raise ModelLoadError(self.runtime, kwargs["model_path"], err) from err
        details = interpreter.get_input_details()
        wanted = [batch_one_shape(d["shape_signature"]) for d in details]
        if all(list(d["shape"]) == w for d, w in zip(details, wanted)):
            interpreter.allocate_tensors()
            return interpreter
        try:
            for d, shape in zip(details, wanted):
                interpreter.resize_tensor_input(d["index"], shape)
            interpreter.allocate_tensors()
            return interpreter
        except (RuntimeError, ValueError) as err:
            # A graph exported with a fixed batch > 1 may bake the batch into reshapes; run it as is.
            self.notes.append(f"kept the model's fixed batch: resizing to batch 1 failed ({err})")
            interpreter = module.Interpreter(**kwargs)
            interpreter.allocate_tensors()
            return interpreter

    def feed(self, rng) -> None:
        for d in self.interpreter.get_input_details():
            self.interpreter.set_tensor(d["index"], random_input(d["shape"], d["dtype"], rng))

    def run(self) -> None:
        self.interpreter.invoke()


class _OnnxSession:
    def __init__(self, model_path: str, threads: int, delegate: str, runtime: str | None):
        if runtime not in (None, "onnxruntime"):
            raise BenchError(f"runtime {runtime!r} cannot run .onnx models; use onnxruntime")
        if delegate not in ONNX_DELEGATES:
            raise BenchError(f"delegate {delegate!r} is not an onnxruntime option; use one of {ONNX_DELEGATES}")
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BenchError(f"onnxruntime is not installed ({err}); `pip install onnxruntime`") from err
        self.runtime, self.runtime_version = "onnxruntime", ort.__version__
        self.notes: list[str] = []
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        providers = ["CPUExecutionProvider"]
        self.delegate = "cpu"
        if delegate == "xnnpack" and "XnnpackExecutionProvider" in ort.get_available_providers():
            providers = [("XnnpackExecutionProvider", {"intra_op_num_threads": threads}), "CPUExecutionProvider"]
            self.delegate = "xnnpack"
        elif delegate == "xnnpack":
            self.notes.append("this onnxruntime build has no XNNPACK provider; ran on the CPU provider")
        try:
            self.session = ort.InferenceSession(model_path, sess_options=options, providers=providers)
        except Exception as err:  # onnxruntime's own types: InvalidProtobuf, InvalidGraph, Fail, ...
            raise ModelLoadError(self.runtime, model_path, err) from err
        self.feeds_spec = []
        for node in self.session.get_inputs():
            shape = batch_one_shape(node.shape) if _is_dynamic(node.shape) else list(node.shape)
            self.feeds_spec.append((node.name, shape, _onnx_dtype(node.type)))
        first = self.feeds_spec[0][1] if self.feeds_spec else [1]
        self.batch = int(first[0]) if first else 1
        if self.batch != 1:
            self.notes.append(f"kept the model's fixed batch {self.batch}: its batch dim is not symbolic")
        self.feeds: dict = {}

    def feed(self, rng) -> None:
        self.feeds = {name: random_input(shape, dtype, rng) for name, shape, dtype in self.feeds_spec}

    def run(self) -> None:
        self.session.run(None, self.feeds)


def _is_dynamic(shape) -> bool:
    return any(not isinstance(d, int) or d <= 0 for d in shape)


def _onnx_dtype(type_name: str):
    table = {
        "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
        "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16",
        "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(bool)": "bool",
    }
    if type_name not in table:
        raise BenchError(f"cannot make random input of ONNX type {type_name}")
    return table[type_name]


# --- the benchmark ------------------------------------------------------------------------------


def benchmark(model_path: str, threads: int = 1, delegate: str = "xnnpack", warmup: int = 10,
              runs: int = 100, runtime: str | None = None, seed: int = 0, load_guard=None) -> dict:
    """Load, warm up and time ``runs`` invokes; every invoke is timed with perf_counter_ns.

    ``load_guard``: a no-argument context manager factory entered around loading the model (the
    local runner keeps the runtime's native INFO lines off stderr with it). A model the runtime
    cannot load raises :class:`ModelLoadError`."""
    import contextlib

    import numpy as np

    if not os.path.isfile(model_path):
        raise BenchError(f"model file not found on the device: {model_path}")
    if threads < 1 or warmup < 0 or runs < 1:
        raise BenchError(f"need threads >= 1, warmup >= 0, runs >= 1 (got {threads}, {warmup}, {runs})")
    suffix = os.path.splitext(model_path)[1].lower()
    session_type = {".tflite": _TfliteSession, ".onnx": _OnnxSession}.get(suffix)
    if session_type is None:
        raise BenchError(f"unsupported model type {suffix!r}: expected .tflite or .onnx")

    with (load_guard or contextlib.nullcontext)():
        start = time.perf_counter_ns()
        session = session_type(model_path, threads, delegate, runtime)
        init_ns = time.perf_counter_ns() - start
    session.feed(np.random.default_rng(seed))

    warmup_ns = []
    for _ in range(warmup):
        t0 = time.perf_counter_ns()
        session.run()
        warmup_ns.append(time.perf_counter_ns() - t0)
    times_ns = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        session.run()
        times_ns.append(time.perf_counter_ns() - t0)

    result = {
        "ok": True,
        "helper_version": HELPER_VERSION,
        "runtime": session.runtime,
        "runtime_version": session.runtime_version,
        "threads": threads,
        "delegate": session.delegate, "delegate_applied": getattr(session, "delegate_applied", None),
        "warmup": warmup,
        "runs": runs,
        "batch": session.batch,
        "init_ms": init_ns / 1e6,
        "first_inference_ms": warmup_ns[0] / 1e6 if warmup_ns else None,
        "warmup_mean_ms": sum(warmup_ns) / len(warmup_ns) / 1e6 if warmup_ns else None,
        "notes": session.notes,
    }
    result.update(summarize_ns(times_ns))
    return result


def predict(model_path: str, inputs_path: str, delegate: str = "xnnpack", runtime: str | None = None) -> dict:
    """Each row of INPUTS.npy (the model's input dtype and layout) through a .tflite model at batch
    1; the outputs come back as one .npy file's bytes, base64."""
    import base64
    import io

    import numpy as np

    session = _TfliteSession(model_path, 1, delegate, runtime)
    it = session.interpreter
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    x = np.load(inputs_path)
    ys = []
    for row in x:
        it.set_tensor(inp["index"], row[None].astype(inp["dtype"]))
        it.invoke()
        ys.append(it.get_tensor(out["index"])[0].copy())
    buf = io.BytesIO()
    np.save(buf, np.stack(ys))
    return {"ok": True, "helper_version": HELPER_VERSION, "runtime": session.runtime,
            "runtime_version": session.runtime_version, "delegate": delegate,
            "delegate_applied": session.delegate_applied, "outputs_npy_b64": base64.b64encode(buf.getvalue()).decode()}


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--delegate", default="xnnpack")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--runtime", default=None, help="force a runtime module, e.g. tflite_runtime")
    parser.add_argument("--predict", default=None, metavar="INPUTS.npy", help="outputs instead of timings")
    args = parser.parse_args(argv)

    # Runtimes may write to fd 1 from C++; keep the real stdout for the JSON object alone.
    sys.stdout.flush()
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    code = 0
    try:
        if args.predict:
            result = predict(args.model, args.predict, args.delegate, args.runtime)
        else:
            result = benchmark(args.model, args.threads, args.delegate, args.warmup, args.runs, args.runtime)
        # Peak RSS of this fresh process: interpreter + runtime + model, the whole footprint.
        result["peak_memory_mb"] = _peak_rss_mb()
        result["device_info"] = device_info()
    except BenchError as err:
        result, code = {"ok": False, "error": str(err), "error_type": "BenchError"}, 2
    except Exception as err:  # the runtime's own failure (bad model, unsupported op) is the answer
        result, code = {"ok": False, "error": f"{type(err).__name__}: {err}", "error_type": type(err).__name__}, 2
    json_out.write(json.dumps(result) + "\n")
    json_out.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
