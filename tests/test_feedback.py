"""The measured-latency feedback loop, for real on this host: a latency model that predicts 10x too
fast makes the first pick miss the budget as measured; the build refits, picks again, and ends with
a student whose *measured* latency meets the budget. Every round is in the manifest."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgedistill.paths import calibration_dir

# every test here trains, builds or runs a benchmark script: the full suite's, not the fast tier's
pytestmark = pytest.mark.slow


def _npz(path: Path, n: int = 500, size: int = 32) -> Path:
    """Ten learnable classes of 32x32 images (a bright bar at a class-specific row), so latency is
    dominated by compute and candidates differ clearly in speed."""
    rng = np.random.default_rng(0)

    def make(count):
        x = rng.integers(0, 30, size=(count, size, size)).astype(np.uint8)
        y = np.arange(count) % 10
        for i, c in enumerate(y):
            x[i, 3 * c + 1 : 3 * c + 3, :] = 250
        return x, y

    (xt, yt), (xs, ys) = make(n), make(n // 2)
    np.savez(path, x_train=xt, y_train=yt, x_test=xs, y_test=ys)
    return path


def test_a_missed_budget_is_measured_refit_and_met(tmp_path, monkeypatch):
    from edgedistill.config import BuildConfig
    from edgedistill.data.load import load_dataset
    from edgedistill.hardware.latency_model import load_latency_model
    from edgedistill.hardware.targets import load_target
    from edgedistill.models import count_parameters, create_model
    from edgedistill.pipeline import build
    from edgedistill.progress import Reporter
    from edgedistill.select.candidates import select_student
    from edgedistill.teacher.builtin import default_teacher_spec

    data_path = _npz(tmp_path / "bars.npz")
    data = load_dataset(data_path)
    teacher_spec = default_teacher_spec(data.input_shape_nchw, data.num_classes)
    teacher_params = count_parameters(create_model(teacher_spec))

    # The honest host model sets the budget between the biggest and the smallest student...
    honest = select_student(teacher_spec, data.input_shape_nchw, load_target("host"), teacher_params, 10.0,
                            latency_model=load_latency_model("host"))
    fitting = [c for c in honest.candidates if "smaller than the teacher" not in c.why_not]
    big, small = fitting[0].predicted_latency_ms, fitting[-1].predicted_latency_ms
    assert big > 2 * small, "the candidate ladder must span a clear range of latency"
    # The shipped host model was fitted on another machine: scale the budget by how fast this one
    # runs the biggest candidate, so the budget sits between the ladder's ends here too.
    from edgedistill.hardware.calibrate import export_for_latency, measure

    probe = export_for_latency(fitting[0].spec, data.input_shape_nchw, "int8", tmp_path / "probe.tflite")
    speed = measure(probe, threads=1, warmup=20, runs=200).median_ms / big
    budget = math.sqrt(big * small) * speed

    # ...and a miscalibrated copy (10x too optimistic) makes the first pick the biggest.
    calib = tmp_path / "calibration"
    shutil.copytree(calibration_dir(), calib)
    host = json.loads((calib / "host.json").read_text())
    host["latency_model"]["scale"] = 0.1
    (calib / "host.json").write_text(json.dumps(host))
    monkeypatch.setenv("EDGEDISTILL_CALIBRATION", str(calib))

    cfg = BuildConfig(target="host", data=str(data_path), out=str(tmp_path / "out"), run_dir=str(tmp_path / "run"),
                      epochs=8, teacher_epochs=2, qat_epochs=2, scratch_baseline=False, bench_runs=200,
                      bench_warmup=20, max_latency_ms=budget, max_rounds=6)
    result = build(cfg, Reporter(quiet=True))

    import dataclasses

    rounds = [dataclasses.asdict(r) for r in result.feedback_rounds]
    print(f"budget {budget:.4f} ms; rounds:", json.dumps(rounds, indent=1))  # shown with pytest -s
    assert len(rounds) >= 2
    assert rounds[0]["candidate"] == fitting[0].name and not rounds[0]["within_budget"]
    assert rounds[0]["measured_ms"] > budget
    assert rounds[-1]["within_budget"] and rounds[-1]["measured_ms"] <= budget
    assert all(not r["within_budget"] for r in rounds[:-1])
    manifest = json.loads((result.bundle_dir / "manifest.json").read_text())
    assert manifest["feedback_rounds"] == rounds
    assert manifest["artifacts"]["model.tflite"]["latency"]["median_ms"] == pytest.approx(rounds[-1]["measured_ms"])
    assert manifest["selection"]["chosen"] == rounds[-1]["candidate"]
