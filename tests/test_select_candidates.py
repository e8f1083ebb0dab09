"""Candidates keep the teacher's family and proportions; selection and feedback honour budgets."""

import json

from edgedistill.hardware.cost import FEATURES
from edgedistill.hardware.latency_model import LatencyModel
from edgedistill.hardware.targets import load_target
from edgedistill.models.mobilenet import MobileNetSpec
from edgedistill.models.resnet import ResNetSpec
from edgedistill.models.vit import ViTSpec
from edgedistill.select.candidates import (
    evaluate_candidates,
    next_choice,
    shrink_specs,
    zoo_teacher_spec,
)

SHAPE = (1, 8, 8)


def test_resnet_candidates_keep_family_stage_count_and_width_ratios():
    teacher = ResNetSpec(1, 10, (32, 64, 128), (3, 3, 3))
    specs = shrink_specs(teacher)
    assert {s.family for s in specs} == {"resnet"}
    for s in specs:
        m = s.widths[2] / teacher.widths[2]  # the width multiplier, channels rounded to multiples of 4
        assert len(s.widths) == 3 and all(abs(w - t * m) <= 4 for w, t in zip(s.widths, teacher.widths))
        assert all(1 <= d <= 3 for d in s.depths)
    assert {s.depths for s in specs} >= {(3, 3, 3), (2, 2, 2), (1, 1, 1)}


def test_vit_candidates_keep_head_width_and_scale_heads_with_the_embedding():
    teacher = ViTSpec(1, 10, 8, 2, 64, 4, 4)
    specs = shrink_specs(teacher)
    assert {s.family for s in specs} == {"vit"}
    assert {s.depth for s in specs} == {4, 3, 2, 1}
    for s in specs:
        assert s.dim % s.heads == 0 and s.dim <= 64 and s.patch_size == 2
        if s.heads > 1:
            assert s.dim // s.heads == 16  # the teacher's head width


def test_a_teacher_outside_the_zoo_gets_inverted_residual_candidates_and_says_so():
    import torch

    spec, note = zoo_teacher_spec(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)), (1, 8, 8), 10)
    assert spec.family == "mobilenet" and "outside the zoo" in note and "depthwise" in note
    cands = shrink_specs(spec)
    assert all(c.family == "mobilenet" and c.expansion == spec.expansion for c in cands)
    assert {c.depths for c in cands} == {(2, 2, 2), (1, 1, 1)}
    for c in cands:  # proportions kept (channels round to multiples of 4)
        m = c.widths[2] / spec.widths[2]
        assert all(abs(w - t * m) <= 4 for w, t in zip(c.widths, spec.widths))


def test_a_mobilenet_teacher_keeps_its_family():
    teacher = MobileNetSpec(1, 10, (16, 32, 64), (1, 2, 3), 6)
    spec, note = zoo_teacher_spec(teacher, (1, 8, 8), 10)
    assert spec is teacher and not note
    cands = evaluate_candidates(teacher, SHAPE, load_target("host"), 10**9, 1.0)
    assert all(c.spec.family == "mobilenet" and c.predicted_latency_ms > 0 for c in cands)
    assert (1, 1, 2) in {c.spec.depths for c in cands}


def _tiny_model(ms_per_flop: float) -> LatencyModel:
    coef = dict.fromkeys(FEATURES, 0.0) | {"conv_macs": ms_per_flop, "fc_macs": ms_per_flop, "matmul_macs": ms_per_flop}
    return LatencyModel("host", "litert", 1, {"int8": dict(coef), "fp32": dict(coef)})


def test_latency_budget_excludes_and_the_choice_is_the_largest_that_fits():
    target = load_target("host").with_budgets(latency_ms=0.5, model_size_kb=1e6)
    teacher = ResNetSpec(1, 10, (32, 64, 128), (2, 2, 2))
    cands = evaluate_candidates(teacher, SHAPE, target, 10**9, 1.0, latency_model=_tiny_model(1e-6))
    assert all(c.predicted_latency_ms is not None for c in cands)
    assert [c.params for c in cands] == sorted((c.params for c in cands), reverse=True)
    slow = [c for c in cands if c.predicted_latency_ms > 0.5]
    assert slow and all(not c.fits and "latency" in c.why_not for c in slow)
    fitting = [c for c in cands if c.fits]
    assert fitting and all(c.predicted_latency_ms <= 0.5 for c in fitting)


def test_next_choice_skips_candidates_measured_over_budget():
    target = load_target("host").with_budgets(latency_ms=10.0, model_size_kb=1e6)
    teacher = ResNetSpec(1, 10, (32, 64, 128), (2, 2, 2))
    cands = evaluate_candidates(teacher, SHAPE, target, 10**9, 1.0, latency_model=_tiny_model(1e-9))
    first = next_choice(cands, {}, 10.0)
    assert first is cands[0]
    second = next_choice(cands, {first.key: 12.0}, 10.0)
    assert second is not None and second.key != first.key
    # the table the choice was made from says why the first one no longer fits
    assert not first.fits and first.why_not == "measured latency 12 ms > 10 ms" and second.fits
    # measured within budget counts, even where a refitted model predicts over budget
    third = next_choice(cands, {first.key: 12.0, second.key: 9.0}, 10.0, latency_model=_tiny_model(1.0))
    assert third is second
    # a refit that says everything unmeasured is too slow leaves nothing once the measured one fails
    assert next_choice(cands, {first.key: 12.0, second.key: 11.0}, 10.0, latency_model=_tiny_model(1.0)) is None


def test_select_json_has_candidates_and_chosen(capsys):
    from edgedistill.select.cli import select_command

    code = select_command(target="host", json_out=True, max_latency_ms=None, max_size_kb=None,
                          min_compression=1.0, calibration=None)
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert isinstance(doc["candidates"], list) and doc["candidates"]
    row = doc["candidates"][0]
    for key in ("name", "params", "flops", "predicted_latency_ms", "predicted_size_kb", "fits", "why_not", "spec"):
        assert key in row
    assert doc["chosen"]["name"] in [c["name"] for c in doc["candidates"] if c["fits"]]
    assert doc["rule"].startswith("highest capacity")


def test_select_outside_zoo_shows_the_inverted_residual_students_and_why(capsys):
    from edgedistill.select.cli import select_command

    code = select_command(target="android-arm64", json_out=True, max_latency_ms=None, max_size_kb=None,
                          min_compression=10.0, calibration=None, outside_zoo=True)
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and "outside the zoo" in doc["note"]
    assert {c["spec"]["family"] for c in doc["candidates"]} == {"mobilenet"}
    # compression is judged against the built-in teacher's size, not the mobilenet base's
    assert all(c["params"] * 10 <= 696_042 for c in doc["candidates"] if c["fits"])
    assert doc["chosen"]["spec"]["family"] == "mobilenet"
