"""Calibrate a target's latency model by measuring generated models, and refit it from measurements.

``calibrate(target)`` builds the spread of zoo models (:mod:`edgedistill.hardware.spread`: resnet,
mobilenet and vit on 1x28x28, and resnet, mobilenet and mbconv on RGB 96-224 px), exports
each to .tflite (int8 by PT2E post-training quantization, and fp32), benchmarks them with
``bench_model(..., "local")`` at the target's thread count, appends every measurement to the
LatencyStore (with what was measured in ``model``, so the store alone can refit the model later) and fits
:class:`LatencyModel`. Exports are cached by spec under ``<cache>/calibration_models`` so a rerun
only re-measures.

Calibration exports use a static batch of 1: that is what is timed, and the vit family does not
lower to LiteRT with a dynamic batch (litert-torch 0.10 cannot size the patch-embedding reshape).

The feedback building blocks for the build live here too: :func:`refit_from_measurement` (and, in
selection, :func:`~edgedistill.select.candidates.next_choice`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from edgedistill.bench.measurement import MeasuredModel
from edgedistill.hardware.cost import FEATURES
from edgedistill.hardware.latency_model import (
    LatencyModel,
    LatencyRecord,
    calibration_path,
    latency_model_for,
    user_calibration_path,
)
from edgedistill.hardware.spread import (  # noqa: F401  (CALIBRATION_INPUT: part of this module's interface)
    CALIBRATION_INPUT, REAL_RESOLUTION_SIZES, calibration_specs, real_resolution_specs,
)
from edgedistill.hardware.targets import Target
from edgedistill.models import create_model, spec_from_dict, spec_to_dict

MIN_RECORDS_FOR_FULL_REFIT = 2 * len(FEATURES)

log = logging.getLogger(__name__)


def cpu_model() -> str:
    """This machine's CPU as /proc/cpuinfo names it (e.g. "x86_64 AMD EPYC"), else what
    :mod:`platform` knows: says which kind of machine a calibration was measured on without
    identifying the machine (no host name, no paths)."""
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                name = value.strip()
                break
    except OSError:
        pass
    return " ".join(p for p in (platform.machine(), name or platform.processor()) if p).strip()


def measured_source(command: str, what: str) -> dict:
    """The ``sources`` entry of a calibration measured here. No machine paths: the file ships in
    the repository (the latency store's location said nothing about the measurements)."""
    return {"kind": "measured", "what": what, "command": command, "host": cpu_model(), "date": time.strftime("%Y-%m-%d")}


def spec_hash(spec: Any, input_shape: tuple[int, ...]) -> str:
    blob = json.dumps({"spec": spec_to_dict(spec), "input": list(input_shape)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --- export -------------------------------------------------------------------------------------


def export_for_latency(spec: Any, input_shape: tuple[int, ...], precision: str, path: Path, seed: int = 0) -> Path:
    """Export ``spec`` (random weights) to a batch-1 NHWC .tflite at ``precision`` (int8 or fp32),
    through the TFLite backend's own conversion (what the build ships is what calibration times)."""
    from edgedistill.backends.tflite.convert import export_tflite_fp32, export_tflite_int8
    from edgedistill.quantize.qat import make_quantizer, post_training_quantize

    torch.manual_seed(seed)
    model = create_model(spec).eval()
    calib = torch.randn(8, *input_shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    if precision == "int8":
        # Post-training only (QAT's quantizer without the training): latency depends on the
        # graph, not on the learned values. Batch 1, as timed.
        quantizer = make_quantizer(qat=False)
        batches = (calib[i : i + 1] for i in range(len(calib)))
        converted = post_training_quantize(model, calib[:1], quantizer, batches, dynamic_batch=False)
        return export_tflite_int8(converted, quantizer, calib[:1], path, dynamic_batch=False)
    if precision == "fp32":
        return export_tflite_fp32(model, calib[:1], path, dynamic_batch=False)
    raise ValueError(f"calibration exports int8 or fp32, not {precision!r}")


def _export_job(args: tuple) -> tuple[str, str, float]:  # (spec dict, input shape, precision, path)
    spec_d, input_shape, precision, path = args
    t0 = time.perf_counter()
    export_for_latency(spec_from_dict(spec_d), tuple(input_shape), precision, Path(path))
    return spec_d["family"], path, time.perf_counter() - t0


def export_all(jobs: list[tuple[Any, str, Path]], input_shape: tuple[int, ...], workers: int = 1,
               progress: Callable[[str], None] | None = None) -> None:
    """Export every (spec, precision, path[, input shape]) whose file is missing, at the job's own
    input shape when it has one, else ``input_shape``; ``workers`` > 1 uses processes."""
    todo = [(spec_to_dict(j[0]), list(j[3] if len(j) > 3 else input_shape), j[1], str(j[2]))
            for j in jobs if not Path(j[2]).is_file()]
    if not todo:
        return
    if workers <= 1:
        for job in todo:
            _, path, secs = _export_job(job)
            if progress:
                progress(f"exported {Path(path).name} in {secs:.1f} s")
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        for _, path, secs in pool.map(_export_job, todo):
            if progress:
                progress(f"exported {Path(path).name} in {secs:.1f} s")


# --- measuring ------------------------------------------------------------------------------------


def measure(path: Path, threads: int, warmup: int, runs: int, rounds: int = 2):
    """bench_model on this host; the best of ``rounds`` medians (other processes only add time)."""
    from edgedistill.bench import bench_model

    best = None
    for _ in range(rounds):
        m = bench_model(path, "local", threads=threads, delegate="xnnpack", warmup=warmup, runs=runs)
        if best is None or m.median_ms < best.median_ms:
            best = m
    return best


@dataclass
class CalibrationResult:
    model: LatencyModel
    records: list[LatencyRecord]
    path: Path | None
    seconds: float
    rows: list[dict] = field(default_factory=list)


def measured_records(specs: list, input_shape: tuple[int, ...], precisions: tuple[str, ...], threads: int,
                     *, warmup: int = 30, runs: int = 200, rounds: int = 2, workers: int = 2,
                     store=None, command: str = "", progress: Callable[[str], None] | None = None,
                     model_dir: Path | None = None) -> list[LatencyRecord]:
    """Export (cached), benchmark and turn each (spec, precision) into a LatencyRecord. ``specs``
    may hold (spec, input shape) pairs, each then measured at its own shape instead of ``input_shape``."""
    from edgedistill.paths import cache_dir

    model_dir = model_dir or cache_dir() / "calibration_models"
    pairs = [s if isinstance(s, tuple) else (s, tuple(input_shape)) for s in specs]
    jobs = [(s, p, model_dir / f"{s.family}-{spec_hash(s, shape)}-{p}.tflite", shape) for s, shape in pairs
            for p in precisions]
    export_all(jobs, input_shape, workers=workers, progress=progress)
    records = []
    for spec, precision, path, shape in jobs:
        m = measure(path, threads, warmup, runs, rounds)
        m.model = MeasuredModel(spec=spec_to_dict(spec), input_shape=list(shape), precision=precision)
        m.extra.update({"purpose": "latency-model calibration", "command": command})
        if store is not None:
            store.append(m)
        name = spec.describe() if hasattr(spec, "describe") else str(spec)
        records.append(LatencyRecord.from_model(spec, shape, precision, threads, m.median_ms, name,
                                                f"measured: {command}" if command else "measured"))
        if progress:
            progress(f"{precision:<4} {name:<28} {'x'.join(map(str, shape)):>9} {m.median_ms * 1000:9.1f} us")
    return records


def calibrate(target: Target, *, quick: bool = False, out: Path | None = None, write_repo_file: bool = False,
              store=None, precisions: tuple[str, ...] = ("int8", "fp32"), runs: int = 200, warmup: int = 30,
              workers: int = 2, progress: Callable[[str], None] | None = None) -> CalibrationResult:
    """Measure generated models here, append them to the store, fit and save the target's model.

    Writes ``out`` if given, else the repository's ``calibration/<target>.json`` when
    ``write_repo_file`` (a checkout only: an installed wheel's package data is not rewritten), else
    ``<cache>/calibration/<target>.json``, which :func:`~edgedistill.hardware.latency_model.find_calibration`
    reads before the shipped file. Only meaningful for a target whose device is this host
    (``host``, or a user's own local target); other targets' figures come from their own devices.
    """
    from edgedistill.bench import LatencyStore
    from edgedistill.errors import InputError
    from edgedistill.paths import is_installed_data

    if out is None and write_repo_file and is_installed_data(calibration_path(target.name)):
        raise InputError(
            f"--write-repo rewrites a checkout's calibration/{target.name}.json, and this edgedistill is an "
            f"installed package ({calibration_path(target.name).parent})",
            hint=f"leave out --write-repo: the fit goes to {user_calibration_path(target.name)}, which builds "
                 "read before the shipped calibration",
        )
    started = time.perf_counter()
    store = store if store is not None else LatencyStore()
    command = f"edgedistill calibrate --target {target.name}" + (" --quick" if quick else "")
    specs = calibration_specs(quick) + ([] if quick else real_resolution_specs())
    records = measured_records(specs, CALIBRATION_INPUT, precisions, target.threads, warmup=warmup, runs=runs,
                               workers=workers, store=store, command=command, progress=progress)
    model = LatencyModel(target.name, target.runtime, target.threads).fit(records)
    model.sources = [measured_source(
        command,
        f"{len(records)} benchmarks ({len(specs)} generated resnet/mobilenet/mbconv/vit models x "
        f"{', '.join(precisions)}), median of {runs} runs after {warmup} warm-up, best of 2 rounds, "
        f"threads={target.threads}, batch 1, input {CALIBRATION_INPUT}"
        + ("" if quick else f" and RGB {'/'.join(map(str, REAL_RESOLUTION_SIZES))} px"),
    )]
    path = out if out is not None else (calibration_path(target.name) if write_repo_file
                                        else user_calibration_path(target.name))
    doc = {"latency_model": model.to_dict(), "records": [r.to_dict() for r in records]}
    from edgedistill.fsutil import write_json_atomic

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, doc)
    return CalibrationResult(model, records, Path(path), time.perf_counter() - started)


# --- feedback -------------------------------------------------------------------------------------


def record_from_measurement(m, spec: Any = None, input_shape: tuple[int, ...] | None = None,
                            precision: str | None = None) -> LatencyRecord:
    """A LatencyRecord from a stored Measurement; spec/shape/precision from ``m.model`` when not given."""
    spec = spec if spec is not None else spec_from_dict(m.model.spec)
    shape = tuple(input_shape if input_shape is not None else m.model.input_shape)
    precision = precision or m.model.precision
    name = spec.describe() if hasattr(spec, "describe") else str(spec)
    return LatencyRecord.from_model(spec, shape, precision, int(m.threads), float(m.median_ms), name,
                                    f"measured on {m.device} at {m.timestamp}")


def matching_measurements(target: Target, measurements: list) -> list:
    """Measurements of this target's kind: same runtime family, thread count, and a spec to refit from."""
    out, seen = [], set()
    for m in measurements:
        if int(m.threads) != target.threads or m.model is None or getattr(m, "emulated", False):
            continue
        if target.runtime == "litert" and not str(m.model_file).endswith(".tflite"):
            continue
        # Only measurements of this target's kind of hardware: this host for a local target, a
        # device (never this host) for the others; a build's records name their target.
        if m.is_host != (target.device_kind == "local"):
            continue
        if m.model.target not in ("", target.name):
            continue
        key = (m.model_sha256, m.device)  # a rerun measures the same model again: count it once
        if key in seen:
            continue
        seen.add(key)
        out.append(m)
    return out


def refit_from_measurement(target: Target, measurement_records: list, prior: LatencyModel | None = None) -> LatencyModel:
    """The target's latency model corrected by measurements of it, for choosing at the target's precision.

    ``measurement_records``: LatencyRecords, or Measurements whose ``model`` says what was measured,
    as calibrate and the build's bench stage store them. Only records at ``target.precision``
    count: a CPU's int8 and fp32 speeds are not in the ratio of the machine the prior was fitted
    on (tests/test_feedback.py's first student, on a 2-core x86 CI-like host: int8 at 0.31x the
    shipped host model's prediction, its fp32 export at 1.03x), so an fp32 record would pull the
    scale the int8 choice is made with. The ratio is the machine's: on this project's 2-core AMD
    EPYC host (2026-12-08) that student's int8 ran at 0.76x, and 27 held-out models at 0.84x and
    0.90x in two runs (median; ``scripts/bench_latency_model.py``).
    With at least ``MIN_RECORDS_FOR_FULL_REFIT`` of them the precision's coefficients are refitted;
    with fewer, the prior keeps its shape and only ``scale`` changes, to the median of
    measured / predicted (one noisy point must not rewrite six coefficients). With none, the prior.
    """
    prior = prior or latency_model_for(target)
    records = []
    for r in measurement_records:
        if isinstance(r, LatencyRecord):
            records.append(r)
        elif r.model is not None:
            records.append(record_from_measurement(r))
    own = [r for r in records if r.precision == target.precision]
    if not own or target.precision not in prior.coefficients:
        return prior
    model = prior.with_scale(1.0)
    if len(own) >= MIN_RECORDS_FOR_FULL_REFIT:
        model.fit(own)
        model.sources = list(prior.sources) + [{"kind": "refit", "what": f"{len(own)} measured {target.precision} records"}]
        return model
    ratios = [r.measured_ms / model.predict_features(r.features, r.precision, r.threads) for r in own]
    model = model.with_scale(float(np.median(ratios)))
    model.sources = list(prior.sources) + [{
        "kind": "scale",
        "what": f"scale {model.scale:.3f} = median measured/predicted of {len(ratios)} {target.precision} record(s)",
    }]
    return model


# --- targets without a device here: scaled from a public benchmark ---------------------------------

# MobileNet v2 1.0 (224x224): 300 M multiply-accumulates (Sandler et al. 2018, Table 4).
MOBILENET_V2_MACS = 300e6


def derive_latency_model(host: LatencyModel, target: Target, fp32_ms_per_mac: float, int8_over_fp32: float,
                         citations: list[dict], reasoning: str) -> LatencyModel:
    """A target's model as the host's, scaled so that it predicts the published MobileNet v2 1.0
    latency (224x224 RGB, :data:`MOBILENET_V2_MACS` x the device's ms per MAC) for that model.

    Every host coefficient of a precision is multiplied by (published ms) / (the host model's
    prediction for MobileNet v2 at 224 px) of that precision: the whole model is the anchor, not its
    conv MACs alone, because at 224 px depthwise convs and the bytes moved are a large share of the
    time (scaling by the conv MAC cost alone predicted 2-3x the published figure). Overheads scale
    with the core's speed too. The coefficients stand for the target's own thread count (the
    published figure's). A scaled estimate: replace it by measuring on the device (`edgedistill
    bench` then ``refit_from_measurement``).
    """
    from edgedistill.hardware.cost import model_cost
    from edgedistill.models.mobilenet import real_resolution_base

    anchor = model_cost(real_resolution_base(3, 1000, (224, 224)), (3, 224, 224))
    coefficients = {}
    scales = {}
    for precision, device_per_mac in (("fp32", fp32_ms_per_mac), ("int8", fp32_ms_per_mac * int8_over_fp32)):
        host_coef = host.coefficients[precision]
        host_ms = host.with_scale(1.0).predict_features(anchor.features(precision), precision, host.threads)
        s = device_per_mac * MOBILENET_V2_MACS / host_ms
        scales[precision] = s
        coefficients[precision] = {f: v * s for f, v in host_coef.items()}
    return LatencyModel(
        target=target.name, runtime=target.runtime, threads=target.threads, coefficients=coefficients,
        sources=[{
            "kind": "derived",
            "what": reasoning + " Host coefficients scaled so the host model's MobileNet v2 1.0 at 224x224 takes "
                    f"the published time: by {scales['fp32']:.3g} (fp32) and {scales['int8']:.3g} (int8). "
                    "A scaled estimate, not a measurement.",
            "reasoning": reasoning,  # on its own, so the file can be derived again from a new host model
            "device_ms_per_mac": {"fp32": fp32_ms_per_mac, "int8": fp32_ms_per_mac * int8_over_fp32},
            "int8_over_fp32": int8_over_fp32,
            "base": "calibration/host.json",
            "citations": citations,
        }],
    )
