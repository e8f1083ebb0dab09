"""The benchmark scripts behind the README's claims run and print what they promise (tiny settings)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_timeouts import CLI_TIMEOUT_S

# every test here trains, builds or runs a benchmark script: the full suite's, not the fast tier's
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("family,methods", [("cnn", "scratch,init,kd"), ("vit", "scratch,attention")])
def test_bench_distill_json_has_the_promised_rows(family, methods):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_distill.py"), "--family", family, "--seeds", "2",
         "--epochs", "1", "--teacher-epochs", "1", "--methods", methods, "--json"],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)
    assert [r["method"] for r in rows] == ["teacher", *methods.split(",")]
    for r in rows:
        assert {"method", "acc_mean", "acc_std", "sec_per_epoch"} <= set(r)
        assert 0.0 <= r["acc_mean"] <= 1.0 and r["sec_per_epoch"] > 0
    distilled = rows[-1]
    assert distilled["seeds"] == 2 and "diff_vs_scratch" in distilled and "seeds_won" in distilled
    teacher, student = rows[0]["params"], distilled["params"]
    assert teacher >= 30 * student  # the capacity gap the issue asks the table to have


def test_bench_scale_times_each_stage_and_the_peak_memory_of_a_real_build(tmp_path):
    proc = subprocess.run(
        # enough epochs for a teacher and student above chance: the smoke build must ship (exit 0)
        [sys.executable, str(ROOT / "scripts" / "bench_scale.py"), "--sizes", "40", "--images", "200", "--epochs", "2",
         "--teacher-epochs", "4", "--data-root", str(tmp_path / "data"), "--json"],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads(proc.stdout)["rows"]
    assert (row["size"], row["images"]) == (40, 200) and row["exit_code"] == 0, row
    assert {"data", "teacher", "select", "distill", "quantize", "export"} <= set(row["stages_s"]), row
    assert row["train_images"] > 100 and row["distill_images_per_s"] > 0 and row["tail"] == []
    assert 0.2 < row["peak_rss_gb"] < 8 and not row["out_of_memory"]
    by_stage = row["peak_rss_gb_by_stage"]
    assert set(by_stage) == set(row["stages_s"]) and max(by_stage.values()) == row["peak_rss_gb"]
    assert list(by_stage.values()) == sorted(by_stage.values())  # a high-water mark only rises
    own = row["stage_own_peak_rss_gb"]  # each stage's peak within itself, its mark reset at each stage
    assert set(own) == set(by_stage) and all(v is None or 0 < v <= row["peak_rss_gb"] for v in own.values())
    assert max(v for v in own.values() if v is not None) >= 0.9 * by_stage["export"]


def test_bench_scales_untrained_teacher_is_the_builtin_network_as_a_factory(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from bench_scale import untrained_teacher
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    import torch

    from edgedistill.models.base import count_parameters, create_model
    from edgedistill.teacher.builtin import default_teacher_spec
    from edgedistill.teacher.load import load_teacher

    data = tmp_path / "rgb96-10"
    for name in ("a", "b", "c"):
        (data / "train" / name).mkdir(parents=True)
    path = untrained_teacher(tmp_path, data, 96)
    first, again = (load_teacher(f"{path}:build").module for _ in range(2))
    expected = create_model(default_teacher_spec((3, 96, 96), 3))
    assert count_parameters(first) == count_parameters(expected)
    x = torch.randn(2, 3, 96, 96)
    assert first(x).shape == (2, 3) and bool((first(x) == again(x)).all())  # seeded: the same weights each time
