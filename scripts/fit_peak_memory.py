#!/usr/bin/env python3
"""Measure what running a .tflite costs in memory on this host, and fit the selector's estimate to it.

    python scripts/fit_peak_memory.py [--sizes 96 160 224] [--precisions int8 fp32] [--threads 4] [--json]

Exports the calibration spread's real-resolution models (``real_resolution_specs``: the built-in
teacher's residual layout, MobileNetV2's and EfficientNet-Lite0's at 96, 160 and 224 px, 1/4 to
full width; random weights, static batch 1, through the calibration's own export and its cache,
``<cache>/calibration_models``, which ``edgedistill calibrate`` fills too) and runs each in a fresh process: LiteRT's interpreter with XNNPACK loads it, allocates
and invokes it three times, and the process's peak RSS (``VmHWM``) is read before the interpreter
is made and after the last invoke. The difference is the model's footprint: the flatbuffer, the
delegate's packed copy of the weights, the activation arena, XNNPACK's indirection tables and the
runtime's own state.

It then fits, per precision, by non-negative least squares,

    footprint = a * activations + b * weights + d * indirection + c

(the features of :meth:`ModelCost.memory_features`, in bytes) and prints each model's footprint, the
shipped estimate's error and the refit's, and the constants. Those constants are
``PEAK_MEMORY_FIT`` in ``edgedistill/hardware/cost.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
ROOT = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter with only numpy and the runtime loaded (no torch): the model's share
# of the peak is then the peak after invoking minus the peak before the interpreter was made.
MEASURE = r"""
import importlib.util, json, sys
import numpy as np
spec = importlib.util.spec_from_file_location("device_bench", sys.argv[1])
bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)
bench._import_tflite(None)

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

before = hwm()
session = bench._TfliteSession(sys.argv[2], int(sys.argv[3]), "xnnpack", None)
rng = np.random.default_rng(0)
for _ in range(3):
    session.feed(rng)
    session.run()
print(json.dumps({"before": before, "after": hwm(), "delegate_applied": session.delegate_applied}))
"""


def footprint(path: Path, threads: int) -> int:
    """Bytes the model adds to a fresh process's peak RSS (see ``MEASURE``)."""
    helper = ROOT / "edgedistill" / "bench" / "device_bench.py"
    out = subprocess.run([sys.executable, "-c", MEASURE, str(helper), str(path), str(threads)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{path}: the runtime could not load and run it:\n{out.stderr[-2000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if not r["delegate_applied"]:
        raise RuntimeError(f"{path}: XNNPACK did not take the model")
    return r["after"] - r["before"]


def label(spec, shape) -> str:
    widths = "-".join(str(w) for w in spec.widths)
    return f"{spec.family} w{widths} d{'-'.join(str(d) for d in spec.depths)} @{shape[1]}"


def predict(constants: tuple[float, float, float, float], row: dict) -> float:
    a, b, d, c = constants
    return a * row["activations"] + b * row["weights"] + d * row["indirection"] + c


def fit(rows: list[dict]) -> tuple[float, float, float, float]:
    """Non-negative least squares: no term of the footprint can shrink it (at 96 px the
    activations are small and nearly collinear with the weights, and a free fit turns them negative)."""
    from scipy.optimize import nnls

    x = np.array([[r["activations"], r["weights"], r["indirection"], 1.0] for r in rows])
    y = np.array([r["measured"] for r in rows], dtype=float)
    (a, b, d, c), _ = nnls(x, y)
    return float(a), float(b), float(d), float(c)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[96, 160, 224])
    ap.add_argument("--precisions", nargs="+", default=["int8", "fp32"], choices=["int8", "fp32"])
    ap.add_argument("--threads", type=int, default=4, help="the interpreter's threads (the targets' own: 4)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from edgedistill.hardware.calibrate import export_all, spec_hash
    from edgedistill.hardware.cost import PEAK_MEMORY_FIT, model_cost
    from edgedistill.hardware.spread import real_resolution_specs
    from edgedistill.paths import cache_dir
    from edgedistill.streams import stdout_to_stderr

    model_dir = cache_dir() / "calibration_models"  # named as calibration names them: one cache for both
    jobs = [(spec, precision, model_dir / f"{spec.family}-{spec_hash(spec, shape)}-{precision}.tflite", shape)
            for spec, shape in real_resolution_specs() if shape[1] in args.sizes for precision in args.precisions]
    rows: list[dict] = []
    with stdout_to_stderr(args.json):  # the exporters print; with --json, stdout carries the JSON alone
        model_dir.mkdir(parents=True, exist_ok=True)
        export_all(jobs, (), progress=lambda line: print(line, file=sys.stderr, flush=True))
        for spec, precision, path, shape in jobs:
            cost = model_cost(spec, shape)
            rows.append({"model": label(spec, shape), "size": shape[1], "precision": precision, "params": cost.params,
                         **cost.memory_features(precision), "file_bytes": path.stat().st_size,
                         "measured": footprint(path, args.threads), "shipped": cost.peak_memory_bytes(precision)})
            print(f"measured {rows[-1]['model']} {precision}: {rows[-1]['measured'] / 2**20:.2f} MB",
                  file=sys.stderr, flush=True)

    fits = {}
    for precision in args.precisions:
        mine = [r for r in rows if r["precision"] == precision]
        if len(mine) < 3:
            continue
        fits[precision] = fit(mine)
        for r in mine:
            r["refit"] = predict(fits[precision], r)
    if args.json:
        print(json.dumps({"threads": args.threads, "fits": fits, "rows": rows}, indent=2))
        return 0

    def err(pred: float, meas: float) -> float:
        return 100.0 * (pred - meas) / meas

    print(f"{'model':<44} {'prec':<5} {'params':>9} {'measured MB':>11} {'shipped':>8} {'err':>7} {'refit':>7} {'err':>7}")
    for r in rows:
        print(f"{r['model']:<44} {r['precision']:<5} {r['params']:>9} {r['measured'] / 2**20:>11.2f} "
              f"{r['shipped'] / 2**20:>8.2f} {err(r['shipped'], r['measured']):>+6.0f}% "
              f"{r.get('refit', float('nan')) / 2**20:>7.2f} {err(r.get('refit', float('nan')), r['measured']):>+6.0f}%")
    for precision, (a, b, d, c) in fits.items():
        mine = [r for r in rows if r["precision"] == precision]
        # Held out by resolution: each size predicted by the constants fitted on the others.
        held = []
        for size in sorted({r["size"] for r in mine}):
            rest = [r for r in mine if r["size"] != size]
            if len(rest) >= 4:
                held_fit = fit(rest)
                held += [abs(err(predict(held_fit, r), r["measured"])) for r in mine if r["size"] == size]
        shipped = [abs(err(r["shipped"], r["measured"])) for r in mine]
        refit = [abs(err(r["refit"], r["measured"])) for r in mine]
        print(f"{precision}: fit footprint = {a:.3f} x activations + {b:.3f} x weights + {d:.3f} x indirection "
              f"+ {c / 2**20:.2f} MB "
              f"over {len(mine)} models; |error| median/max: shipped {np.median(shipped):.0f}%/{max(shipped):.0f}%, "
              f"refit {np.median(refit):.1f}%/{max(refit):.1f}%"
              + (f", each size held out {np.median(held):.1f}%/{max(held):.1f}%" if held else "")
              + f" (shipped constants: {PEAK_MEMORY_FIT.get(precision)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
