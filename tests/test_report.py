"""report.html is one self-contained page; every section it can't fill is left out, not broken."""

import base64
import re

import pytest

from edgedistill.bundle.html_report import confusion_matrix, render_html
from edgedistill.bundle.report import render_markdown
from edgedistill.gates import GateConfig, evaluate_gates

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def latency(median_ms, runtime="ai_edge_litert 2.3.0"):
    return {"median_ms": median_ms, "p90_ms": median_ms * 1.2, "mean_ms": median_ms, "runs": 10, "warmup": 2,
            "threads": 4, "delegate": "xnnpack", "runtime": runtime, "device": "local", "measured_on": "host",
            "device_info": {"cpu": "AMD EPYC", "soc": "AMD EPYC", "model": None}}


@pytest.fixture
def manifest():
    artifacts = {
        name: {"format": name.rsplit(".", 1)[1], "precision": prec, "accuracy": 0.95, "agreement": 1.0,
               "agreement_reference": "torch student", "latency": latency(ms)}
        for name, prec, ms in (("model.tflite", "int8", 0.004), ("model_fp32.tflite", "fp32", 0.005),
                               ("model.onnx", "fp32", 0.04), ("model_int8.onnx", "int8", 0.08))
    }
    return {
        "schema_version": 1,
        "model": "model.tflite",
        "labels": [str(i) for i in range(10)],
        "artifacts": artifacts,
        "files": {name: {"bytes": 50_000, "sha256": "0" * 64} for name in artifacts},
        "target": {"name": "android-arm64", "description": "Android phone <arm64>", "cpu": "Cortex-A76",
                   "runtime": "litert", "delegate": "xnnpack",
                   "budgets": {"latency_ms": 5.0, "model_size_kb": 64.0, "peak_memory_mb": 32.0}},
        "teacher": {"params": 696_042, "test_accuracy": 0.97},
        "student": {"params": 44_226, "spec": {"family": "resnet", "widths": [8, 16, 32], "depths": [2, 2, 2]},
                    "test_accuracy_fp32": 0.955, "test_accuracy_qat": 0.95, "scratch_test_accuracy": 0.94,
                    "compression": 15.7, "loss": "ce=0.5,kd=0.5,T=4", "selection_rule": "largest that fits"},
        "data": {"name": "digits", "fingerprint": "f" * 64, "counts": {"train": 1169, "val": 269, "test": 359}},
        "seed": 0,
        "versions": {"edgedistill": "0.1.0", "torch": "2.13.0"},
    }


@pytest.fixture
def extras():
    cands = [
        {"name": "resnet w16-32-64 d2-2-2", "params": 174_970, "predicted_size_kb": 176.7,
         "predicted_latency_ms": 9.0, "fits": False, "why_not": "size 176.7 KB > 64 KB"},
        {"name": "resnet w8-16-32 d2-2-2", "params": 44_226, "predicted_size_kb": 49.0,
         "predicted_latency_ms": 3.0, "fits": True, "why_not": "", "accuracy": 0.955},
        {"name": "resnet w8-16-32 d1-1-1", "params": 19_810, "predicted_size_kb": 25.2,
         "predicted_latency_ms": None, "fits": True, "why_not": "", "accuracy": 0.93},
    ]
    curve = [{"epoch": e, "loss": 1.0 / e, "val_acc": 0.9 + e / 100} for e in (1, 2, 3)]
    return {
        "candidates": cands,
        "chosen": "resnet w8-16-32 d2-2-2",
        "training_curves": {"distill": curve, "scratch": curve, "teacher": []},
        "confusion_matrix": confusion_matrix([0, 1, 2, 2], [0, 1, 2, 1], 10),
        "stage_seconds": {"data": 1.0, "distill": 20.0, "quantize": 90.0, "total": 111.0},
        "feedback_rounds": [
            {"round": 1, "candidate": "resnet w12-24-48 d2-2-2", "predicted_ms": 4.0, "measured_ms": 6.1,
             "within_budget": False},
            {"round": 2, "candidate": "resnet w8-16-32 d2-2-2", "predicted_ms": 3.0, "measured_ms": 3.2,
             "within_budget": True},
        ],
    }


def embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def assert_self_contained(page: str) -> None:
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', page, re.I), "fetches something from the network"
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert "url(" not in page  # no CSS resources either


def test_full_report_is_self_contained_with_every_chart_embedded(manifest, extras):
    page = render_html(manifest, extras)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert_self_contained(page)
    pngs = embedded_pngs(page)
    # candidates, feedback rounds, training curves, confusion matrix, wall time per stage
    assert len(pngs) == 5
    assert all(p.startswith(PNG_MAGIC) for p in pngs)
    for heading in ("Accuracy", "Artifacts", "Candidates", "Latency feedback rounds", "Training",
                    "Confusion matrix", "Wall time per stage", "Provenance"):
        assert f"<h2>{heading}</h2>" in page


def test_chosen_candidate_is_marked_and_every_candidate_listed(manifest, extras):
    page = render_html(manifest, extras)
    assert page.count('<tr class="chosen">') == 1
    chosen_row = page.split('<tr class="chosen">')[1].split("</tr>")[0]
    assert "resnet w8-16-32 d2-2-2 \u2605" in chosen_row and "95.50%" in chosen_row
    for c in extras["candidates"]:
        assert c["name"] in page
    assert "not trained" in page  # the candidate without an accuracy


def test_latency_figures_name_their_device_and_runtime(manifest, extras):
    page = render_html(manifest, extras)
    assert "ai_edge_litert 2.3.0" in page and "build host" in page and "AMD EPYC" in page
    assert "Latency was measured on the build host, not on a device of the target." in page


def test_report_degrades_to_manifest_only_sections_without_extras(manifest):
    page = render_html(manifest, {})
    assert_self_contained(page)
    assert embedded_pngs(page) == []
    assert "<h2>Accuracy</h2>" in page and "<h2>Artifacts</h2>" in page
    for absent in ("Candidates", "Training", "Confusion matrix", "Wall time per stage", "Latency feedback rounds",
                   "Release gates"):
        assert f"<h2>{absent}</h2>" not in page
    assert render_html(manifest, None) == page


def test_partial_extras_are_tolerated(manifest):
    page = render_html(manifest, {
        "candidates": [{"name": "only", "params": 10, "predicted_latency_ms": None, "fits": True}],
        "training_curves": {"distill": [{"epoch": 1, "loss": None, "val_acc": float("nan")}]},
        "confusion_matrix": [],
        "stage_seconds": {"total": 3.0},
        "feedback_rounds": [{"round": 1, "candidate": "x"}],
    })
    assert_self_contained(page)
    assert "<h2>Candidates</h2>" in page and "<h2>Confusion matrix</h2>" not in page


def test_user_text_is_escaped(manifest):
    page = render_html(manifest, {"candidates": [{"name": "<img src=http://evil>", "params": 1, "fits": True}]})
    assert "<img src=http://evil>" not in page and "&lt;img src=http://evil&gt;" in page
    assert "Android phone &lt;arm64&gt;" in page


def test_gates_appear_in_both_reports(manifest):
    gates = evaluate_gates(manifest, GateConfig(min_accuracy=0.9, max_size_kb=40))
    page = render_html(manifest, {"gates": [g.to_dict() for g in gates]})
    assert "1 gate(s) failed" in page and "<h2>Release gates</h2>" in page
    md = render_markdown(manifest, {"data": 1.0}, gates)
    assert "(1 gate(s) failed)" in md.splitlines()[0]
    assert "| max_size_kb | **FAIL** | model.tflite is 48.8 KB > required 40 KB |" in md


def test_markdown_checks_size_against_the_budget_and_not_host_latency(manifest):
    md = render_markdown(manifest, {"data": 1.0})
    assert "size 64.0 KB (model.tflite 48.8 KB, within)" in md
    assert "latency 5.0 ms (not checked: measured on the build host)" in md
    manifest["files"]["model.tflite"]["bytes"] = 70_000
    assert "68.4 KB, **over budget**" in render_markdown(manifest, {})
    assert "report.html" not in md and "`report.html`" in render_markdown(manifest, {}, links_html=True)
