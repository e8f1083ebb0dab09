"""How well does the latency model predict models it was not fitted on?

Measures the calibration spread (resnet, mobilenet and vit models of varied depth and width on
1x28x28, and with ``--spread all`` also the real-resolution one: resnet, mobilenet and mbconv on RGB
96/160/224 px; exported int8 by PT2E post-training quantization) on this host, fits the target's
latency model on at most ``--n-fit`` of them (evenly spaced in cost, every family) and reports its
error on the rest, overall, per family and per input size:

    python scripts/bench_latency_model.py --target host [--json] [--precision int8] [--spread all --n-fit 20]

Exports are cached under <cache>/calibration_models, so a rerun only re-measures (~1 min).
Acceptance for host: >= 80% of held-out predictions within +-15%.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def split_fit_test(records, n_fit: int):
    """Evenly spaced (by latency) picks from each family for fitting, ``n_fit`` shared out as evenly
    as the families allow (10 over three families: 4, 3, 3); the rest for testing."""
    fams = sorted({_group(r) for r in records})
    fit = []
    for i, fam in enumerate(fams):
        per_family = max(1, n_fit // len(fams) + (1 if i < n_fit % len(fams) else 0))
        rs = sorted((r for r in records if _group(r) == fam), key=lambda r: r.measured_ms)
        idx = np.unique(np.linspace(0, len(rs) - 1, min(per_family, len(rs))).round().astype(int))
        fit.extend(rs[i] for i in idx)
    fit_ids = {id(r) for r in fit}
    return fit, [r for r in records if id(r) not in fit_ids]


def _group(r) -> str:
    """Family and input size, e.g. ``mbconv@224`` (the fit draws from each)."""
    return f"{r.name.split()[0]}@{r.input_shape[-1] if r.input_shape else '?'}"


def _errors_by(rows, key) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for k in sorted({key(r) for r in rows}):
        errs = np.abs([r[3] for r in rows if key(r) == k])
        out[k] = {"n": len(errs), "median_abs_pct_err": float(np.median(errs)), "within_15pct": float(np.mean(errs <= 15))}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="host")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--precision", default=None, help="int8 or fp32 [default: the target's precision]")
    parser.add_argument("--n-fit", type=int, default=10)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2, help="export processes")
    parser.add_argument("--spread", choices=("small", "all"), default="small",
                        help="small: the 1x28x28 spread; all: with the RGB 96-224 px one (as calibrate measures)")
    args = parser.parse_args(argv)

    from edgedistill.bench import LatencyStore
    from edgedistill.hardware.calibrate import measured_records
    from edgedistill.hardware.spread import CALIBRATION_INPUT, calibration_specs, real_resolution_specs
    from edgedistill.hardware.latency_model import LatencyModel
    from edgedistill.hardware.targets import load_target
    from edgedistill.streams import stdout_to_stderr

    target = load_target(args.target)
    if target.device_kind != "local":
        print(f"{target.name} is measured on its own device; this benchmark runs on this host only", file=sys.stderr)
        return 2
    precision = args.precision or target.precision
    started = time.perf_counter()
    say = (lambda s: None) if args.json else (lambda s: print(s, flush=True))
    command = f"python scripts/bench_latency_model.py --target {target.name}"
    # The converters print progress on stdout (natively too); with --json it carries the JSON alone.
    with stdout_to_stderr(args.json):
        specs = calibration_specs() + (real_resolution_specs() if args.spread == "all" else [])
        records = measured_records(specs, CALIBRATION_INPUT, (precision,), target.threads,
                                   runs=args.runs, workers=args.workers, store=LatencyStore(), command=command,
                                   progress=say)
    fit, test = split_fit_test(records, args.n_fit)
    model = LatencyModel(target.name, target.runtime, target.threads).fit(fit)
    rows = []
    for r in test:
        pred = model.predict_features(r.features, precision, r.threads)
        rows.append((r.name, r.measured_ms, pred, (pred / r.measured_ms - 1) * 100,
                     r.input_shape[-1] if r.input_shape else 0))
    errs = np.abs([row[3] for row in rows])
    result = {
        "target": target.name, "precision": precision, "threads": target.threads,
        "n_fit": len(fit), "n_test": len(test),
        "within_15pct": float(np.mean(errs <= 15.0)),
        "median_abs_pct_err": float(np.median(errs)),
        "max_abs_pct_err": float(errs.max()),
        "by_family": _errors_by(rows, lambda row: row[0].split()[0]),
        "by_input_size": _errors_by(rows, lambda row: str(row[4])),
        "fit_models": [r.name for r in fit],
        "coefficients": model.coefficients[precision],
        "seconds": round(time.perf_counter() - started, 1),
        "test": [{"name": n, "input_size": s, "measured_ms": m, "predicted_ms": p, "pct_err": e} for n, m, p, e, s in rows],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"\nfitted on {len(fit)}: {', '.join(result['fit_models'])}")
    print(f"{'held-out model':<40} {'input':>5} {'measured us':>12} {'predicted us':>13} {'error':>8}")
    for n, m, p, e, s in sorted(rows, key=lambda r: r[1]):
        print(f"{n[:40]:<40} {s:>5} {m * 1000:12.1f} {p * 1000:13.1f} {e:+7.1f}%")
    for what in ("by_family", "by_input_size"):
        print(f"{what.replace('_', ' ')}: " + ", ".join(
            f"{k} n={v['n']} median |error| {v['median_abs_pct_err']:.1f}% ({v['within_15pct']:.0%} within 15%)"
            for k, v in result[what].items()))
    print(f"\n{target.name} {precision}: n_fit={len(fit)} n_test={len(test)} "
          f"within +-15%: {result['within_15pct']:.0%}  median |error|: {result['median_abs_pct_err']:.1f}%  "
          f"max |error|: {result['max_abs_pct_err']:.1f}%  ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
