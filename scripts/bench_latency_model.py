"""How far off is the latency model a build uses, on models it was never fitted on?

Loads the target's latency model exactly as the build does (``latency_model_for``: your own
``<cache>/calibration/<target>.json`` from ``edgedistill calibrate`` if there is one, else the
shipped ``calibration/<target>.json``), measures a fixed held-out set on this host and reports that
model's error on it: the share of models predicted within +-10% and +-20% (the figures nn-Meter and
LitePred report) and the median |error|, overall, per family and per input size. The held-out set
(``edgedistill.hardware.spread.held_out_specs``) is 27 students the build itself would rank (the
shrunk candidates of the built-in teacher, MobileNetV2, EfficientNet-Lite0 and a vit at 28, 96,
160 and 224 px), none of them in the spread any calibration is fitted on; each is exported int8
(PT2E post-training quantization) into ``<cache>/calibration_models``, as calibration exports, so a
rerun only re-measures (~75 s on a shared 2-core host; the first run's exports ~10 min).

It also holds out whole families: on the records the calibration file was fitted on (measured on
the machine that made it), each family is predicted by a model fitted on the other families and,
for comparison, each model by one fitted on every other model (its family included).

    python scripts/bench_latency_model.py --target host [--json] [--calibration FILE] [--refit-here [--spread all]]

``--refit-here`` also measures the calibration spread on this host and fits a model on it, as
``edgedistill calibrate`` would: its numbers are labelled "refitted on this machine" and are not
the error of the calibration a build loads. Nothing here writes a calibration or the latency store.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

TOLERANCES_PCT = (10.0, 20.0)  # nn-Meter and LitePred report the share within +-10%


@dataclass
class Prediction:
    """One held-out model: what was measured here and what the model under test predicted."""

    name: str
    family: str
    input_size: int
    measured_ms: float
    predicted_ms: float

    @property
    def pct_err(self) -> float:
        """Signed: negative when the model predicts faster than measured."""
        return (self.predicted_ms / self.measured_ms - 1.0) * 100.0


def within_share(pct_errors, tolerance_pct: float) -> float:
    """Share of predictions whose |error| is at most ``tolerance_pct`` percent."""
    errs = np.abs(np.asarray(pct_errors, dtype=float))
    return float(np.mean(errs <= tolerance_pct)) if errs.size else float("nan")


def error_summary(pct_errors, ratios=None) -> dict:
    """n, the share within each of ``TOLERANCES_PCT``, median and max |error|, and (given the
    measured/predicted ratios) their median: how many times slower than predicted a model runs."""
    errs = np.abs(np.asarray(pct_errors, dtype=float))
    out = {"n": int(errs.size)}
    for tol in TOLERANCES_PCT:
        out[f"within_{tol:g}pct"] = within_share(errs, tol)
    out["median_abs_pct_err"] = float(np.median(errs)) if errs.size else float("nan")
    out["max_abs_pct_err"] = float(errs.max()) if errs.size else float("nan")
    if ratios is not None:
        out["median_measured_over_predicted"] = float(np.median(ratios)) if len(ratios) else float("nan")
    return out


def summary_of(preds: list[Prediction]) -> dict:
    return error_summary([p.pct_err for p in preds], [p.measured_ms / p.predicted_ms for p in preds])


def summarize(preds: list[Prediction]) -> dict:
    """Overall, per family, per input size and per (family, size) group."""
    of = summary_of

    def by(key, order):
        keys = sorted({(order(p), key(p)) for p in preds})
        return {k: of([p for p in preds if key(p) == k]) for _, k in keys}

    return {"overall": of(preds), "by_family": by(lambda p: p.family, lambda p: p.family),
            "by_input_size": by(lambda p: str(p.input_size), lambda p: p.input_size),
            "by_group": by(lambda p: f"{p.family}@{p.input_size}", lambda p: (p.family, p.input_size))}


def family_of(record) -> str:
    return record.name.split()[0]


def predict_records(model, records, precision: str) -> list[Prediction]:
    return [Prediction(r.name, family_of(r), int(r.input_shape[-1]) if r.input_shape else 0, r.measured_ms,
                       model.predict_features(r.features, precision, r.threads)) for r in records]


def model_under_test(target):
    """(the latency model a build for ``target`` uses, the file it came from, which file that is)."""
    from edgedistill.hardware.latency_model import calibration_path, find_calibration, latency_model_for

    model = latency_model_for(target)
    path = find_calibration(target.name) or Path(model.origin)
    kind = "shipped" if path.resolve() == calibration_path(target.name).resolve() else "cached"
    return model, path, kind


def file_records(path: Path, precision: str) -> list:
    """The records a calibration file keeps of what it was fitted on, at ``precision`` (none for
    the device targets, which are scaled estimates)."""
    from edgedistill.hardware.latency_model import LatencyRecord

    doc = json.loads(Path(path).read_text())
    return [r for r in (LatencyRecord.from_dict(d) for d in doc.get("records", [])) if r.precision == precision]


def fresh_model(template):
    from edgedistill.hardware.latency_model import LatencyModel

    return LatencyModel(template.target, template.runtime, template.threads,
                        parallel_efficiency=template.parallel_efficiency)


def family_holdout(template, fit_pool: list, precision: str, test_by_family: dict | None = None) -> dict:
    """Per family F: the error on F's models of a model fitted on ``fit_pool`` without F, and,
    to compare, of one fitted on all of ``fit_pool`` but the model predicted (leave one out; only
    when F's test models are ``fit_pool``'s own). ``test_by_family`` defaults to each family's
    records in ``fit_pool``."""
    def fitted_without(leave_out) -> object:
        return fresh_model(template).fit([r for r in fit_pool if not leave_out(r)])

    out = {}
    for fam in sorted({family_of(r) for r in fit_pool}):
        own = ([r for r in fit_pool if family_of(r) == fam] if test_by_family is None
               else test_by_family.get(fam, []))
        if not own:
            continue
        others = fitted_without(lambda r: family_of(r) == fam)
        row = {"family_held_out": summary_of(predict_records(others, own, precision))}
        if test_by_family is None:
            loo = [predict_records(fitted_without(lambda o: o is r), [r], precision)[0] for r in own]
            row["one_model_held_out"] = summary_of(loo)
        out[fam] = row
    return out


def host_load() -> dict:
    """The 1- and 5-minute load averages and the core count: other processes on a busy host
    stretch every timing, so a measured/predicted ratio taken there reads high."""
    import os

    one, five, _ = os.getloadavg()
    return {"cores": os.cpu_count() or 1, "load_1min": round(one, 2), "load_5min": round(five, 2)}


def measure_here(specs, precision: str, threads: int, args, say) -> list:
    from edgedistill.hardware.calibrate import measured_records
    from edgedistill.hardware.spread import CALIBRATION_INPUT

    # No store: an evaluation must not feed the refits of what it evaluates.
    return measured_records(specs, CALIBRATION_INPUT, (precision,), threads, runs=args.runs, workers=args.workers,
                            store=None, command="python scripts/bench_latency_model.py", progress=say)


def refit_here(target, precision: str, held_out: list, args, say) -> dict:
    """A model refitted on the calibration spread measured here, on the same held-out models."""
    from edgedistill.hardware.latency_model import LatencyModel
    from edgedistill.hardware.spread import calibration_specs, real_resolution_specs

    spread = measure_here(calibration_specs() + (real_resolution_specs() if args.spread == "all" else []),
                          precision, target.threads, args, say)
    model = LatencyModel(target.name, target.runtime, target.threads).fit(spread)
    preds = predict_records(model, held_out, precision)
    by_fam = {f: [r for r in held_out if family_of(r) == f] for f in {family_of(r) for r in held_out}}
    return {
        "label": f"a model refitted on this machine ({len(spread)} {args.spread}-spread records), "
                 "not the calibration a build loads",
        "n_fit": len(spread), "spread": args.spread, "coefficients": model.coefficients[precision],
        **summarize(preds), "family_holdout": family_holdout(model, spread, precision, by_fam),
        "test": [asdict(p) | {"pct_err": p.pct_err} for p in preds],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="host")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--precision", default=None, help="int8 or fp32 [default: the target's precision]")
    parser.add_argument("--calibration", type=Path, default=None,
                        help="evaluate this calibration file [default: the one a build loads]")
    parser.add_argument("--refit-here", action="store_true",
                        help="also fit a model on the spread measured here and evaluate it (labelled as such)")
    parser.add_argument("--spread", choices=("small", "all"), default="small",
                        help="with --refit-here: small, the 1x28x28 spread (44 models); "
                             "all, with the RGB 96-224 px one (71)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N held-out models (a smoke run)")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1, help="export processes")
    args = parser.parse_args(argv)

    from edgedistill.hardware.calibrate import cpu_model
    from edgedistill.hardware.latency_model import load_latency_model
    from edgedistill.hardware.spread import held_out_specs
    from edgedistill.hardware.targets import load_target
    from edgedistill.streams import stdout_to_stderr

    target = load_target(args.target)
    if target.device_kind != "local":
        print(f"{target.name} is measured on its own device; this benchmark runs on this host only", file=sys.stderr)
        return 2
    precision = args.precision or target.precision
    if args.calibration is not None:
        model, path, kind = load_latency_model(target.name, args.calibration), args.calibration, "given"
    else:
        model, path, kind = model_under_test(target)
    started = time.perf_counter()
    say = (lambda s: None) if args.json else (lambda s: print(s, flush=True))
    specs = held_out_specs()[: args.limit]
    # The converters print progress on stdout (natively too); with --json it carries the JSON alone.
    with stdout_to_stderr(args.json):
        held_out = measure_here(specs, precision, target.threads, args, say)
        load = host_load()  # right after the timings: the exports before them load the host themselves
        refit = refit_here(target, precision, held_out, args, say) if args.refit_here else None
    preds = predict_records(model, held_out, precision)
    own_records = file_records(path, precision)
    result = {
        "target": target.name, "precision": precision, "threads": target.threads, "cpu": cpu_model(),
        "host_load": load,
        "calibration": {"path": str(path), "kind": kind, "describe": model.describe(target.name),
                        "fitted_on": len(own_records), "sources": model.sources},
        "n_fit": len(own_records), "n_test": len(preds),
        **summarize(preds),
        "family_holdout": {
            "label": "refits on the calibration file's own records (measured where it was made), one family left out",
            "families": family_holdout(model, own_records, precision) if own_records else {},
        },
        "test": [asdict(p) | {"pct_err": p.pct_err} for p in preds],
        **({"refit_here": refit} if refit else {}),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0


def _row(label: str, s: dict) -> str:
    ratio = s.get("median_measured_over_predicted", float("nan"))
    return (f"{label:<16} {s['n']:>3} {s['within_10pct']:>7.0%} {s['within_20pct']:>7.0%} "
            f"{s['median_abs_pct_err']:>9.1f}% {ratio:>9.2f}x")


def print_summary(result: dict) -> None:
    print(f"{'':<16} {'n':>3} {'+-10%':>7} {'+-20%':>7} {'med |err|':>10} {'meas/pred':>10}")
    print(_row("all", result["overall"]))
    for what in ("by_family", "by_input_size", "by_group"):
        for k, s in result[what].items():
            print(_row(f"{k} px" if what == "by_input_size" else k, s))


def print_report(result: dict) -> None:
    cal = result["calibration"]
    print(f"\nmodel under test: {cal['describe']}\n  file: {cal['path']} ({cal['kind']}; fitted on "
          f"{cal['fitted_on']} {result['precision']} records, none of them below)")
    load = result["host_load"]
    print(f"this host: {result['cpu']}, {result['threads']} thread(s); load average {load['load_1min']:.1f} (1 min), "
          f"{load['load_5min']:.1f} (5 min) on {load['cores']} cores after timing\n")
    print(f"{'held-out model':<44} {'input':>5} {'measured us':>12} {'predicted us':>13} {'error':>8}")
    for p in sorted(result["test"], key=lambda p: (p["family"], p["input_size"], p["measured_ms"])):
        print(f"{p['name'][:44]:<44} {p['input_size']:>5} {p['measured_ms'] * 1000:12.1f} "
              f"{p['predicted_ms'] * 1000:13.1f} {p['pct_err']:+7.1f}%")
    print(f"\n{cal['kind']} calibration on {result['n_test']} held-out models measured here:")
    print_summary(result)
    ratio = result["overall"]["median_measured_over_predicted"]
    if load["load_5min"] > load["cores"]:
        print(f"\nThe host was busy while timing (load {load['load_5min']:.1f} on {load['cores']} cores): measured "
              "times are stretched and measured/predicted reads high; rerun on a quiet host to compare.")
    if not 0.8 <= ratio <= 1.25:
        print(f"\nOn this host a model takes {ratio:.2f}x the time this calibration predicts (median measured/"
              f"predicted): `edgedistill calibrate --target {result['target']}` fits one for this machine.")
    fams = result["family_holdout"]["families"]
    if fams:
        print(f"\nwhole families held out ({result['family_holdout']['label']}):")
        print(f"{'':<16} {'':>3} {'one model held out':^28} {'its whole family held out':^28}")
        print(f"{'family':<16} {'n':>3} " + f"{'+-10%':>7} {'+-20%':>7} {'med |err|':>10}  " * 2)
        for fam, row in fams.items():
            a, b = row["one_model_held_out"], row["family_held_out"]
            print(f"{fam:<16} {a['n']:>3} " + "  ".join(
                f"{s['within_10pct']:>7.0%} {s['within_20pct']:>7.0%} {s['median_abs_pct_err']:>9.1f}%" for s in (a, b)))
    if "refit_here" in result:
        r = result["refit_here"]
        print(f"\n{r['label']}, on the same held-out models:")
        print_summary(r)
        print("  with each family left out of its fit: " + ", ".join(
            f"{f} median |error| {v['family_held_out']['median_abs_pct_err']:.1f}%" for f, v in r["family_holdout"].items()))
    o = result["overall"]
    print(f"\n{result['target']} {result['precision']} ({cal['kind']} calibration): {o['n']} held-out models, "
          f"within +-10%: {o['within_10pct']:.0%}, within +-20%: {o['within_20pct']:.0%}, "
          f"median |error| {o['median_abs_pct_err']:.1f}%, measured/predicted {ratio:.2f}x ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
