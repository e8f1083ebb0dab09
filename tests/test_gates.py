"""Release gates judge the manifest's main artifact and say what they measured against what."""

import json

import pytest

from edgedistill.errors import EXIT_GATE, InputError
from edgedistill.gates import GateConfig, GateFailed, check_gates, evaluate_gates, status_for, summary_json


def manifest(accuracy=0.95, median_ms=2.0, nbytes=40 * 1024, fp32=0.96, teacher=0.98, measured_on="device"):
    return {
        "model": "model.tflite",
        "target": {"name": "android-arm64"},
        "teacher": {"test_accuracy": teacher, "params": 700_000},
        "student": {"test_accuracy_fp32": fp32, "params": 44_000},
        "artifacts": {
            "model.tflite": {
                "precision": "int8", "accuracy": accuracy, "agreement": 1.0,
                "latency": {"median_ms": median_ms, "p90_ms": median_ms * 1.1, "measured_on": measured_on,
                            "device": "adb:R58M", "runtime": "ai_edge_litert 2.3.0", "threads": 4},
            },
            "model_fp32.tflite": {"precision": "fp32", "accuracy": fp32, "latency": {}},
        },
        "files": {"model.tflite": {"bytes": nbytes, "sha256": "ab" * 32}},
    }


def by_name(results):
    return {r.name: r for r in results}


def test_no_gate_configured_means_no_results():
    assert evaluate_gates(manifest(), GateConfig()) == []
    assert not GateConfig().any


def test_all_gates_pass_with_measured_and_required_values():
    cfg = GateConfig(min_accuracy=0.9, max_accuracy_drop=0.02, max_latency_ms=5.0, max_size_kb=64)
    results = by_name(check_gates(manifest(), cfg))
    assert set(results) == {"min_accuracy", "max_accuracy_drop", "max_latency_ms", "max_size_kb"}
    assert all(r.passed for r in results.values())
    assert results["min_accuracy"].measured == 0.95 and results["min_accuracy"].required == 0.9
    assert results["max_accuracy_drop"].measured == pytest.approx(0.01)
    assert results["max_latency_ms"].measured == 2.0 and results["max_latency_ms"].required == 5.0
    assert results["max_size_kb"].measured == pytest.approx(40.0)
    assert results["max_size_kb"].unit == "KB"


def test_each_gate_fails_on_its_own_measurement():
    m = manifest(accuracy=0.90, median_ms=7.5, nbytes=65 * 1024 + 200)
    cfg = GateConfig(min_accuracy=0.93, max_accuracy_drop=0.02, max_latency_ms=5.0, max_size_kb=64)
    results = by_name(evaluate_gates(m, cfg))
    assert not any(r.passed for r in results.values())
    assert "90.00% < required 93.00%" in results["min_accuracy"].reason
    assert results["max_accuracy_drop"].measured == pytest.approx(0.06)
    assert "6.00 points below the fp32 student" in results["max_accuracy_drop"].reason
    assert "7.50 ms" in results["max_latency_ms"].reason and "> required 5 ms" in results["max_latency_ms"].reason
    assert "65.2 KB > required 64 KB" in results["max_size_kb"].reason


def test_drop_can_be_measured_against_the_teacher():
    m = manifest(accuracy=0.95, fp32=0.951, teacher=0.99)
    fp32 = by_name(evaluate_gates(m, GateConfig(max_accuracy_drop=0.02)))["max_accuracy_drop"]
    teacher = by_name(evaluate_gates(m, GateConfig(max_accuracy_drop=0.02, drop_reference="teacher")))
    assert fp32.passed and fp32.measured == pytest.approx(0.001)
    assert not teacher["max_accuracy_drop"].passed
    assert teacher["max_accuracy_drop"].measured == pytest.approx(0.04)
    assert "teacher" in teacher["max_accuracy_drop"].reason


def test_latency_gate_says_when_the_figure_is_from_the_build_host():
    r = evaluate_gates(manifest(median_ms=0.004, measured_on="host"), GateConfig(max_latency_ms=5))[0]
    assert r.passed and "build host, not the target" in r.reason


def test_missing_latency_fails_the_latency_gate_rather_than_passing_it():
    m = manifest()
    m["artifacts"]["model.tflite"]["latency"]["median_ms"] = None
    r = evaluate_gates(m, GateConfig(max_latency_ms=5))[0]
    assert not r.passed and r.measured is None and "no measured latency" in r.reason


def test_check_gates_raises_gate_failed_with_exit_code_4_and_a_one_line_reason():
    with pytest.raises(GateFailed) as info:
        check_gates(manifest(accuracy=0.5), GateConfig(min_accuracy=0.9, max_size_kb=64))
    err = info.value
    assert err.exit_code == EXIT_GATE == 4
    assert "\n" not in err.message and "min_accuracy" not in err.message and "50.00% < required 90.00%" in err.message
    assert "bundle was not written" in err.message
    assert [r.name for r in err.results] == ["min_accuracy", "max_size_kb"]
    assert err.manifest["model"] == "model.tflite"  # what --json quotes about the rejected model


@pytest.mark.parametrize("kw", [{"min_accuracy": 95}, {"max_accuracy_drop": -0.1}, {"drop_reference": "int8"},
                                {"max_latency_ms": 0}])
def test_bad_gate_values_are_input_errors(kw):
    with pytest.raises(InputError):
        GateConfig(**kw)


def test_gate_config_from_a_build_config_without_gate_fields_has_no_gates():
    class Cfg:
        pass

    assert not GateConfig.from_build_config(Cfg()).any
    cfg = Cfg()
    cfg.gate_min_accuracy, cfg.gate_drop_reference = 0.9, "teacher"
    gc = GateConfig.from_build_config(cfg)
    assert gc.min_accuracy == 0.9 and gc.drop_reference == "teacher"


def test_summary_json_on_success_quotes_the_main_model():
    m = manifest()
    gates = evaluate_gates(m, GateConfig(min_accuracy=0.9))
    s = summary_json("ok", gates, 0, None, m, "dist/android-arm64")
    json.dumps(s)  # serialisable as it is
    assert s["status"] == "ok" and s["exit_code"] == 0 and s["bundle"] == "dist/android-arm64"
    assert s["gates"][0] == {"name": "min_accuracy", "passed": True, "measured": 0.95, "required": 0.9,
                             "reason": gates[0].reason, "unit": "fraction"}
    assert s["model"]["file"] == "model.tflite" and s["model"]["accuracy"] == 0.95
    assert s["model"]["bytes"] == 40 * 1024 and s["model"]["median_ms"] == 2.0
    assert s["artifacts"]["model.tflite"]["sha256"] == "ab" * 32


def test_summary_json_when_the_build_stopped_before_a_manifest():
    s = summary_json(status_for(5), [], 5, "no student meets the budgets", None, None)
    assert s == {"schema_version": 1, "status": "budget", "exit_code": 5, "reason": "no student meets the budgets",
                 "bundle": None, "gates": [], "model": None, "artifacts": {}}


def test_status_words_cover_every_exit_code():
    assert [status_for(c) for c in (0, 1, 2, 3, 4, 5, 6, 130)] == [
        "ok", "error", "input_error", "verify_failed", "gate_failed", "budget", "device_error", "interrupted"]


def test_error_summary_of_each_command_carries_status_exit_code_and_reason():
    from edgedistill.gates import error_summary

    failed = GateFailed(evaluate_gates(manifest(accuracy=0.9), GateConfig(min_accuracy=0.95)), manifest(accuracy=0.9))
    build = error_summary("build", EXIT_GATE, failed.message, failed)
    assert build["status"] == "gate_failed" and build["exit_code"] == EXIT_GATE and build["reason"] == failed.message
    assert build["gates"][0]["name"] == "min_accuracy" and build["model"]["accuracy"] == 0.9  # the rejected model
    assert set(build) == set(summary_json("ok", [], 0, None, None, None))
    verify = error_summary("verify", 2, "No such option: --x")
    assert verify["status"] == "input_error" and verify["problems"] == ["No such option: --x"]
    assert error_summary("select", 130, "interrupted") == {"status": "interrupted", "exit_code": 130,
                                                           "reason": "interrupted"}
