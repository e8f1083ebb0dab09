"""What the bundle's reports and manifest say is true: the candidate chart shows the candidates
legibly and its cross says what they miss; no stage time is printed that was never measured; and
no absolute path of the build machine ships in the bundle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_timeouts import CLI_TIMEOUT_S
from edgedistill.bundle import plots
from edgedistill.bundle.html_report import render_html
from edgedistill.bundle.report import render_markdown
from test_report import manifest  # noqa: F401  (the fixture)

# The default build's candidates: 0.015-0.57 ms predicted, against a 16 ms budget; only the 10x
# compression rule keeps the larger ones out.
LATENCIES = (0.57, 0.35, 0.26, 0.16, 0.15, 0.11, 0.074, 0.052, 0.043, 0.029, 0.027, 0.023, 0.015)


def candidates(why_not: str = "only 2.0x smaller than the teacher (need 10x)") -> list[dict]:
    return [{"name": f"c{i}", "params": 1000 * (20 - i), "predicted_latency_ms": ms, "fits": ms < 0.06,
             "why_not": "" if ms < 0.06 else why_not, **({"accuracy": 0.98} if ms == 0.052 else {})}
            for i, ms in enumerate(LATENCIES)]


@pytest.fixture
def drawn(monkeypatch):
    """The figures the charts draw, caught on their way to PNG."""
    figures = []
    real = plots.to_base64_png
    monkeypatch.setattr(plots, "to_base64_png", lambda fig: figures.append(fig) or real(fig))
    return figures


def strip_axis(fig):
    return fig.axes[-1]  # the strip of every candidate (the only axes when one is trained)


def texts(fig) -> str:
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts + [ax.xaxis.label])


def vertical_lines_at(ax, x: float) -> int:
    return sum(1 for line in ax.get_lines() if list(line.get_xdata()) == [x, x])


# --- the candidate chart -------------------------------------------------------------------------

def test_the_latency_axis_spans_the_candidates_and_names_an_off_axis_budget(drawn):
    assert plots.candidates_chart(candidates(), "c7", budget_ms=16.0) is not None
    ax = strip_axis(drawn[-1])
    low, high = ax.get_xlim()
    assert high <= 1.2 * max(LATENCIES) and low <= min(LATENCIES)  # every candidate, and not 16 ms of nothing
    assert vertical_lines_at(ax, 16.0) == 0
    assert "latency budget, 16 ms, is off the axis" in texts(drawn[-1])


def test_a_budget_within_the_candidates_range_is_drawn_as_a_line(drawn):
    plots.candidates_chart(candidates(), "c7", budget_ms=0.3)
    ax = strip_axis(drawn[-1])
    assert vertical_lines_at(ax, 0.3) == 1
    assert "off the axis" not in texts(drawn[-1])


def test_the_cross_says_which_budgets_the_candidates_miss_not_only_latency(drawn):
    plots.candidates_chart(candidates(), "c7", budget_ms=16.0)
    key = texts(drawn[-1])
    assert "over budget" not in key  # none of them is over any budget: they are too large for 10x
    assert "does not fit (7 too little compression)" in key
    mixed = candidates()
    mixed[0]["why_not"] = "only 1.0x smaller than the teacher (need 10x); size 721.9 KB > 256 KB"
    mixed[1]["why_not"] = "peak memory 40.0 MB > 32 MB"
    plots.candidates_chart(mixed, "c7", budget_ms=16.0)
    assert ("does not fit (6 too little compression, 1 over the size budget, 1 over the memory budget)"
            in texts(drawn[-1]))


# --- stage times ---------------------------------------------------------------------------------

STAGES = {"data": 7.9, "teacher": 5.0, "distill": 40.0, "bench": 2.0, "bundle": 0.0, "total": 54.9}


def test_the_reports_leave_out_the_bundle_stage_they_are_written_in_and_say_why(manifest, drawn):  # noqa: F811
    md = render_markdown(manifest, STAGES)
    assert "bundle 0.0s" not in md
    assert "the bundle stage, which writes this report, is not timed in it" in md
    assert "total 54.9s up to the bundle" in md
    page = render_html(manifest, {"stage_seconds": STAGES})
    assert "The bundle stage, which writes this report, is not timed in it" in page
    bars = [t.get_text() for fig in drawn for ax in fig.axes for t in ax.get_yticklabels()]
    assert "bench" in bars and "bundle" not in bars


# --- no build-machine paths in the bundle ---------------------------------------------------------

def test_portable_paths_are_relative_to_the_working_directory_or_reduced_to_names(tmp_path):
    from edgedistill.bundle.manifest import portable

    cwd, cache, elsewhere = tmp_path / "work", tmp_path / "cache", tmp_path / "elsewhere"
    record = {"path": f"{elsewhere}/teacher.py", "sha256": {f"{elsewhere}/teacher.py": "ab"},
              "spec": f"{cwd}/models/t.py:build", "cache": f"{cache}/teachers/9bd5", "out": str(cwd / "dist"),
              "weights": "w.safetensors", "mean": [0.5], "n": 3}
    assert portable(record, cwd=cwd, cache=cache) == {
        "path": "teacher.py", "sha256": {"teacher.py": "ab"}, "spec": "models/t.py:build",
        "cache": "<cache>/teachers/9bd5", "out": "dist", "weights": "w.safetensors", "mean": [0.5], "n": 3}


@pytest.mark.slow
def test_a_bundle_ships_no_build_machine_path_and_still_verifies_and_resumes(tmp_path):
    from edgedistill.data.digits import load_digits_dataset

    elsewhere, work = tmp_path / "elsewhere", tmp_path / "work"  # data and bundle outside the working dir
    elsewhere.mkdir()
    work.mkdir()
    d = load_digits_dataset()
    np.savez(elsewhere / "digits.npz", x_train=d.train.images, y_train=d.train.labels,
             x_test=d.test.images, y_test=d.test.labels)
    env = {**os.environ, "EDGEDISTILL_CACHE": str(tmp_path / "cache"),
           "EDGEDISTILL_LATENCY_STORE": str(tmp_path / "cache" / "store.jsonl")}
    args = [sys.executable, "-m", "edgedistill.cli", "build", "--target", "android-arm64", "--epochs", "2",
            "--teacher-epochs", "2", "--qat-epochs", "1", "--bench-runs", "5", "--no-scratch",
            "--data", str(elsewhere / "digits.npz"), "--out", str(elsewhere / "dist"), "--run-dir", str(work / "run")]
    proc = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-4000:]
    bundle = elsewhere / "dist" / "android-arm64"
    for name in ("manifest.json", "config.json"):
        text = (bundle / name).read_text()
        assert str(tmp_path) not in text and str(Path.home()) + "/" not in text, name
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["data"]["source"]["path"] == "digits.npz" and m["config"]["data"] == "digits.npz"
    assert m["config"]["run_dir"] == "run" and m["config"]["out"] == "dist"
    assert m["teacher"]["source"]["cache"].startswith("<cache>/teachers/")
    verify = subprocess.run([sys.executable, "-m", "edgedistill.cli", "verify", str(bundle)], cwd=work, env=env,
                            capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert verify.returncode == 0, verify.stderr[-2000:]
    again = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "reused cached teacher" in again.stderr and "distill: reused" in again.stderr  # keys unchanged
