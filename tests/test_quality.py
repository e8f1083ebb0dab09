"""Chance-level and collapse checks: a teacher that never learned the task, or a student that
answers one class, is said loudly instead of shipping with "100% agreement"."""

from __future__ import annotations

import numpy as np
import pytest

from edgedistill.gates import GateFailed, check_teacher_gate
from edgedistill.quality import chance_check, collapse_check


def balanced(n_per_class: int = 36, classes: int = 10) -> np.ndarray:
    return np.repeat(np.arange(classes), n_per_class)


def test_random_teacher_accuracy_is_near_chance_and_a_real_one_is_not():
    labels = balanced()
    assert chance_check(0.10, labels).near_chance
    assert chance_check(0.13, labels).near_chance  # within three standard errors of 10% on 360 images
    assert not chance_check(0.35, labels).near_chance
    assert not chance_check(0.99, labels).near_chance


def test_chance_is_the_commonest_class_not_one_over_k():
    labels = np.array([0] * 90 + [1] * 10)
    check = chance_check(0.9, labels)
    assert check.chance == pytest.approx(0.9)
    assert check.near_chance  # always answering class 0 scores 90% here


def test_a_35_percent_student_on_ten_classes_is_weak_but_not_at_chance():
    check = chance_check(0.35, balanced())
    assert check.weak and not check.near_chance
    assert not chance_check(0.9, balanced()).weak


def test_one_class_answers_are_a_collapse_and_varied_answers_are_not():
    assert collapse_check(np.zeros(100, dtype=int), 10).collapsed
    assert collapse_check(np.array([0] * 60 + list(range(10)) * 4), 10).collapsed  # 60%+ one class
    assert not collapse_check(np.arange(100) % 10, 10).collapsed
    assert "1 of 10 classes" in collapse_check(np.zeros(5, dtype=int), 10).describe()


def test_teacher_gate_fails_with_exit_4_below_the_required_accuracy():
    with pytest.raises(GateFailed) as err:
        check_teacher_gate(0.10, 0.5)
    assert err.value.exit_code == 4
    assert "teacher validation accuracy 10.00% < required 50.00%" in err.value.message
    assert check_teacher_gate(0.9, 0.5).passed


def test_verification_failure_on_a_weak_student_says_it_is_not_an_exporter_bug(tmp_path):
    from edgedistill.verify.checks import _weak_reference_note

    labels = balanced()
    assert "not at the exporter" in _weak_reference_note(0.35, labels)
    assert "at chance" in _weak_reference_note(0.10, labels)
    assert _weak_reference_note(0.95, labels) == ""


def test_collapsed_student_is_warned_about(monkeypatch):
    from edgedistill.data.digits import load_digits_dataset
    from edgedistill.stages.student import check_student as _check_student

    data = load_digits_dataset(seed=0)

    logits = np.zeros((len(data.test), data.num_classes), dtype=np.float32)
    logits[:, 3] = 1.0  # a student that answers class 3 for every image

    class Student:
        test_acc = 0.1

    said: list[str] = []
    _check_student(logits, Student(), data, said.append)
    assert said and "collapsed" in said[0] and "1 of 10 classes" in said[0]


def test_warnings_reach_the_manifest_and_stand_above_the_headline_in_both_reports():
    from test_data_notes import fake_result

    from edgedistill.bundle.html_report import render_html
    from edgedistill.bundle.manifest import build_manifest
    from edgedistill.bundle.report import render_markdown
    from edgedistill.data.digits import load_digits_dataset

    result = fake_result(load_digits_dataset(seed=0))
    result.warnings = ["the teacher is at chance: 10.0% on the validation split"]
    manifest = build_manifest(result, {}, {})
    assert manifest["warnings"] == result.warnings
    manifest.update(artifacts={"model.tflite": {"precision": "int8", "accuracy": 0.1, "agreement": 1.0,
                                                "agreement_reference": "torch", "latency": {
                                                    "median_ms": None, "p90_ms": None, "threads": 2, "warmup": 2,
                                                    "runs": 5, "measured_on": "host", "device": "local"}}})
    md = render_markdown(manifest, {})
    assert md.index("**Warning:** the teacher is at chance") < md.index("| artifact |")
    assert "(the target runs 4; capped at this host's cores)" in md
    page = render_html(manifest, {})
    assert page.index("the teacher is at chance") < page.index("top-1 agreement")
