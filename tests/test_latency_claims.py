"""The latency model's claims: the accuracy benchmark measures the calibration a build loads, its
shares are computed as stated, the calibration docs quote the code, and the shipped calibrations
name no machine path."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgedistill.hardware.calibrate import MIN_RECORDS_FOR_FULL_REFIT
from edgedistill.hardware.latency_model import calibration_path, load_latency_model
from edgedistill.hardware.targets import load_target
from edgedistill.paths import calibration_dir

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_latency_model.py"


def _script():
    spec = importlib.util.spec_from_file_location("bench_latency_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


# --- the benchmark evaluates what a build uses -----------------------------------------------------


def test_the_benchmark_evaluates_the_calibration_a_build_loads(tmp_path, monkeypatch):
    """The shipped file with no calibration of the user's own, the user's own once there is one
    (the build's loader, latency_model_for, in that order)."""
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path))
    bench, target = _script(), load_target("host")
    shipped = json.loads(calibration_path("host").read_text())["latency_model"]

    model, path, kind = bench.model_under_test(target)
    assert (path.resolve(), kind) == (calibration_path("host").resolve(), "shipped")
    assert model.coefficients == shipped["coefficients"]

    own = tmp_path / "calibration" / "host.json"
    own.parent.mkdir()
    doubled = {p: {f: 2 * v for f, v in c.items()} for p, c in shipped["coefficients"].items()}
    own.write_text(json.dumps({"latency_model": {**shipped, "coefficients": doubled}}))
    model, path, kind = bench.model_under_test(target)
    assert (path, kind) == (own, "cached")
    assert model.coefficients == doubled


@pytest.mark.slow
def test_the_benchmark_reports_the_shipped_calibrations_error_on_models_it_never_saw(tmp_path):
    """Run for real on two held-out models: the predictions are the shipped model's, and the
    models are not among the records it was fitted on."""
    from edgedistill.hardware.spread import held_out_specs

    env = {**os.environ, "EDGEDISTILL_CACHE": str(tmp_path), "LITERT_TORCH_SHOW_PROGRESS": "n"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--target", "host", "--json", "--limit", "2", "--runs", "20"],
                          capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(done.stdout)
    assert payload["calibration"]["kind"] == "shipped"
    assert Path(payload["calibration"]["path"]).resolve() == calibration_path("host").resolve()

    shipped = load_latency_model("host", calibration_path("host"))
    fitted_on = {(r["name"], r["input_shape"][-1]) for r in json.loads(calibration_path("host").read_text())["records"]}
    assert payload["n_fit"] == payload["calibration"]["fitted_on"] == len(fitted_on) == 71
    assert [row["name"] for row in payload["test"]] == [s.describe() for s, _ in held_out_specs()[:2]]
    for row, (spec, shape) in zip(payload["test"], held_out_specs()[:2]):
        assert (row["name"], shape[-1]) not in fitted_on
        assert row["predicted_ms"] == pytest.approx(shipped.predict(spec, shape, "int8", payload["threads"]), rel=1e-9)
        assert row["pct_err"] == pytest.approx((row["predicted_ms"] / row["measured_ms"] - 1) * 100)
    assert payload["overall"]["n"] == 2 and set(payload["by_family"]) == {"resnet"}
    assert {"within_10pct", "within_20pct", "median_abs_pct_err"} <= set(payload["overall"])
    assert set(payload["family_holdout"]["families"]) == {"mbconv", "mobilenet", "resnet", "vit"}


def test_held_out_models_are_outside_the_spread():
    from edgedistill.hardware.spread import CALIBRATION_INPUT, calibration_specs, held_out_specs, real_resolution_specs
    from edgedistill.select.candidates import spec_key

    spread = {(spec_key(s), CALIBRATION_INPUT) for s in calibration_specs()}
    spread |= {(spec_key(s), tuple(shape)) for s, shape in real_resolution_specs()}
    held = held_out_specs()
    assert len(held) == 27 and not {(spec_key(s), tuple(shape)) for s, shape in held} & spread
    assert {(s.family, shape[-1]) for s, shape in held} == {
        (f, 28) for f in ("resnet", "mobilenet", "vit")} | {(f, n) for f in ("resnet", "mobilenet", "mbconv")
                                                             for n in (96, 160, 224)}


# --- the shares, on known numbers ------------------------------------------------------------------


def test_shares_within_tolerance_and_median_on_known_errors():
    bench = _script()
    errors = [-5.0, 9.99, 10.0, -10.01, 15.0, -20.0, 25.0, 80.0]  # percent, signed
    assert bench.within_share(errors, 10) == 3 / 8  # |e| <= 10 counts, 10.01 does not
    assert bench.within_share(errors, 20) == 6 / 8
    summary = bench.error_summary(errors, ratios=[1.0, 3.0, 3.2])
    assert summary["n"] == 8 and summary["within_10pct"] == 3 / 8 and summary["within_20pct"] == 6 / 8
    assert summary["median_abs_pct_err"] == pytest.approx((10.01 + 15.0) / 2)
    assert summary["max_abs_pct_err"] == 80.0 and summary["median_measured_over_predicted"] == 3.0


def test_prediction_error_is_signed_against_the_measurement():
    bench = _script()
    fast = bench.Prediction("m", "resnet", 28, measured_ms=3.0, predicted_ms=1.0)
    assert fast.pct_err == pytest.approx(-200 / 3)  # predicted 3x too fast: -66.7%, outside +-20%
    assert bench.summarize([fast])["overall"]["median_measured_over_predicted"] == pytest.approx(3.0)


# --- the docs quote the code -----------------------------------------------------------------------


def test_calibration_readme_quotes_the_full_refit_record_count():
    text = (calibration_dir() / "README.md").read_text()
    quoted = re.findall(r"(\d+) or more of a\s+precision refit", text)
    assert quoted, "calibration/README.md no longer says how many records refit a precision's coefficients"
    assert [int(q) for q in quoted] == [MIN_RECORDS_FOR_FULL_REFIT] * len(quoted)


# --- no machine paths in what ships ----------------------------------------------------------------

_MACHINE_PATH = re.compile(r"(?:^|[\s'\"(=:])(?:/(?:root|home|Users|tmp|var|opt|usr|mnt|work)\b|~/|[A-Za-z]:\\)")


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def _machine_paths(doc) -> list[str]:
    return [s for s in _strings(doc) if _MACHINE_PATH.search(s) or (s.startswith("/") and " " not in s)]


def test_the_path_check_sees_a_store_path():
    assert _machine_paths({"sources": [{"store": "/root/.cache/edgedistill/latency_store.jsonl"}]})
    assert not _machine_paths({"base": "calibration/host.json", "what": "int8/fp32 at 96/160/224 px",
                               "url": "https://github.com/google/XNNPACK"})


@pytest.mark.parametrize("path", sorted(calibration_dir().glob("*.json")), ids=lambda p: p.name)
def test_no_shipped_calibration_names_a_machine_path(path):
    assert not _machine_paths(json.loads(path.read_text())), path.name


@pytest.mark.slow
def test_calibrate_writes_no_machine_path(tmp_path, monkeypatch):
    """The writer itself: a quick calibration with its store under an absolute path."""
    from edgedistill.bench import LatencyStore
    from edgedistill.hardware.calibrate import calibrate

    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path / "cache"))
    store = LatencyStore(tmp_path / "store.jsonl")
    result = calibrate(load_target("host"), quick=True, precisions=("int8",), runs=5, warmup=2, workers=1,
                       out=tmp_path / "host.json", store=store)
    doc = json.loads(result.path.read_text())
    assert store.path.is_file()  # the measurements went to the store ...
    assert str(tmp_path) not in result.path.read_text() and not _machine_paths(doc)  # ... and it is not named
    assert doc["latency_model"]["sources"][0]["host"]
