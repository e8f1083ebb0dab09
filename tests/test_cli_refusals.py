"""Bad input a newcomer types is refused up front by the real CLI: exit 2, one clear line, no
traceback, no work done and nothing written. The build's refusals must come before the data and the
teacher (a default build trains a teacher first, then a student: minutes to hours of wasted work).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

DATA_STAGE = "loading the built-in digits"  # the data stage's first line: work has begun


def _edgedistill() -> list[str]:
    script = Path(sys.executable).parent / "edgedistill"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "edgedistill.cli"]


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDGEDISTILL_CACHE": str(tmp_path / "cache"), "COLUMNS": "200",
           "EDGEDISTILL_LATENCY_STORE": str(tmp_path / "cache" / "latency_store.jsonl")}
    env.pop("EDGEDISTILL_DEVICES", None)
    # Today's failures came after the data, the teacher and more: a short timeout would only make
    # them look like hangs, so wait as long as a build may take and judge by what was done.
    return subprocess.run([*_edgedistill(), *args], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=3600)


def _build(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return _run(tmp_path, "build", "--target", "host", "--out", str(tmp_path / "dist"), "--run-dir",
                str(tmp_path / "run"), "--teacher-epochs", "1", "--epochs", "1", "--qat-epochs", "1",
                "--no-scratch", "--bench-runs", "2", *args)


def _refused_up_front(tmp_path: Path, proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert DATA_STAGE not in proc.stderr, "refused only after the work began:\n" + proc.stderr[-3000:]
    for word in words:
        assert word in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "dist" / "host").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("device,words", [
    ("lcoal", ("--bench-device", "'lcoal'", "devices.toml")),  # a typo of local
    ("ssh://pi@", ("--bench-device", "bad ssh device")),
    ("adb:bad serial", ("--bench-device", "bad adb serial")),
])
def test_a_bench_device_typo_is_refused_before_any_work(tmp_path, device, words):
    _refused_up_front(tmp_path, _build(tmp_path, "--bench-device", device), *words)


@pytest.mark.skipif(torch.version.cuda is not None, reason="this torch has CUDA: the CPU-only refusal does not apply")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_on_a_cpu_only_torch_is_refused_naming_the_build(tmp_path, device):
    _refused_up_front(tmp_path, _build(tmp_path, "--device", device), f"--device {device}", torch.__version__,
                      "CPU-only")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_gpu_index_past_the_visible_gpus_is_refused(tmp_path):
    index = torch.cuda.device_count()
    _refused_up_front(tmp_path, _build(tmp_path, "--device", f"cuda:{index}"), f"cuda:{index}", "GPU(s)")


@pytest.mark.parametrize("device", ["gpu", "cdua", "mps", "cuda:x"])
def test_an_unknown_training_device_is_refused_listing_the_accepted_ones(tmp_path, device):
    _refused_up_front(tmp_path, _build(tmp_path, "--device", device), repr(device), "auto, cpu, cuda, cuda:N")


def test_a_device_set_in_the_config_file_is_checked_the_same_way(tmp_path):
    (tmp_path / "edgedistill.toml").write_text('[build]\nbench-device = "lcoal"\n')
    _refused_up_front(tmp_path, _build(tmp_path), "'lcoal'")


@pytest.mark.parametrize("shape", [("0", "0", "0"), ("-3", "8", "8"), ("1", "8", "0")])
def test_select_refuses_a_non_positive_input_shape(tmp_path, shape):
    proc = _run(tmp_path, "select", "--input-shape", *shape)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert f"--input-shape {' '.join(shape)}" in proc.stderr and "positive" in proc.stderr
