"""Paths the README promises that no other test ran: the post-training int8 graph shipping instead of
the fine-tuned one, a build's exit 5 (no student fits; a budget still missed after --max-rounds),
the stop when another node of a torchrun job loaded other data or another teacher, --no-sync-batchnorm
reaching QAT and the built-in teacher, and the ARM tolerance check's decision."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_timeouts import CLI_TIMEOUT_S

REPO = Path(__file__).resolve().parents[1]


def _cli(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "edgedistill", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, env={**os.environ, **(env or {})})


# --- quantize: the post-training graph ships when it is clearly better --------------------------


@pytest.mark.slow
def test_the_post_training_graph_ships_with_its_own_quantizer_when_it_is_clearly_better(tmp_path):
    """A learning rate that wrecks quantization-aware fine-tuning leaves the post-training graph
    clearly better on validation: it ships (with the post-training quantizer handed to the
    converter), and the .tflite lowered from it agrees with it as a build demands (99%)."""
    from edgedistill.backends.tflite.convert import export_tflite_int8
    from edgedistill.data.digits import load_digits_dataset
    from edgedistill.distill.trainer import TrainConfig, train
    from edgedistill.models.base import create_model
    from edgedistill.models.resnet import ResNetSpec
    from edgedistill.quantize.qat import QATConfig, qat_finetune
    from edgedistill.verify.checks import verify_file

    data = load_digits_dataset()
    torch.manual_seed(0)
    student = create_model(ResNetSpec(1, 10, (8, 16), (1, 1)))
    train(student, data, TrainConfig(epochs=3, seed=0))
    converted, quantizer, result = qat_finetune(student, data, None, QATConfig(epochs=1, lr=5.0))
    assert not result.fine_tuned_kept, dataclasses.asdict(result)
    assert result.val_acc_before > result.val_acc_fine_tuned + 0.1
    assert result.val_acc == result.val_acc_before > 0.5  # far above chance (0.1)
    # the quantizer handed back is the post-training one (observers, not fake-quant)
    assert quantizer.global_config.is_qat is False
    x = torch.from_numpy(data.batch("train", slice(0, 4)))
    export_tflite_int8(converted, quantizer, x, tmp_path / "int8.tflite")
    with torch.no_grad():
        ref = converted(torch.from_numpy(data.batch("test", slice(None)))).numpy()
    report = verify_file(tmp_path / "int8.tflite", "int8", data, ref, "qat", 0.0)
    assert report.input["dtype"] == "int8" and report.output["dtype"] == "int8"
    assert report.agreement >= 0.99, report.problems
    assert abs(report.accuracy - result.test_acc) <= 0.01


# --- exit 5 -------------------------------------------------------------------------------------


@pytest.mark.slow  # the built-in teacher trains (one epoch) before the students are priced
def test_a_budget_no_student_meets_exits_5_with_no_bundle_and_hints_the_cli_takes(tmp_path):
    done = _cli(["build", "--target", "android-arm64", "--max-size-kb", "0.5", "--teacher-epochs", "1", "--json",
                 "-q", "--out", str(tmp_path / "dist"), "--run-dir", str(tmp_path / "run")], tmp_path)
    assert done.returncode == 5, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["status"] == "budget" and summary["exit_code"] == 5 and summary["bundle"] is None
    assert "0.5" in summary["reason"] and "Traceback" not in done.stderr
    assert not (tmp_path / "dist" / "android-arm64").exists()
    assert not list((tmp_path / "run").rglob("distill"))  # no student was trained
    # every --flag the message suggests is one `build` takes
    help_text = _cli(["build", "--help"], tmp_path).stdout
    suggested = {w.strip(".,;:()`'\"") for w in done.stderr.split() if w.startswith("--")}
    assert suggested and all(flag in help_text for flag in suggested), suggested


def _bars(path: Path) -> Path:
    """Ten learnable classes of 32x32 images, as the feedback test makes them."""
    from test_feedback import _npz

    return _npz(path, n=400)


@pytest.mark.slow
def test_a_budget_still_missed_as_measured_after_max_rounds_exits_5_naming_the_best(tmp_path):
    """A latency model that predicts a million times too fast picks a student whose measured latency on this
    host (the target's own device for --target host) misses a budget nothing can meet; with
    --max-rounds 1 the build stops with exit 5 and no bundle, naming the best it measured."""
    from edgedistill.paths import calibration_dir

    calib = tmp_path / "calibration"
    shutil.copytree(calibration_dir(), calib)
    host = json.loads((calib / "host.json").read_text())
    host["latency_model"]["scale"] = 1e-6
    (calib / "host.json").write_text(json.dumps(host))
    data = _bars(tmp_path / "bars.npz")
    # enough epochs for a student clearly above chance, so verification passes and the budget decides
    done = _cli(["build", "--target", "host", "--data", str(data), "--epochs", "4", "--teacher-epochs", "3",
                 "--qat-epochs", "1", "--no-scratch", "--bench-runs", "20", "--max-latency-ms", "0.0001",
                 "--max-rounds", "1", "--json", "--out", str(tmp_path / "dist"), "--run-dir", str(tmp_path / "run")],
                tmp_path, env={"EDGEDISTILL_CALIBRATION": str(calib)})
    assert done.returncode == 5, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["status"] == "budget" and summary["bundle"] is None
    assert "measured" in summary["reason"] and "0.0001" in summary["reason"], summary["reason"]
    assert not (tmp_path / "dist" / "host").exists()


# --- torchrun: another node with other data or another teacher ----------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun() -> list[str]:
    exe = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]


def _two_nodes(tmp_path: Path, build_args: list[str]) -> list[tuple[int, str]]:
    """Two torchrun "nodes" on this machine (one process each, c10d rendezvous on 127.0.0.1), each
    started in its own folder, as two machines with their own disks would be: the same relative
    paths name each node's own files."""
    port = _free_port()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "EDGEDISTILL_CACHE": str(tmp_path / "cache")}
    procs = []
    for node in ("a", "b"):
        cmd = [*_torchrun(), "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
               "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "mismatch", "--max-restarts", "0",
               "-m", "edgedistill", "build", *build_args]
        procs.append(subprocess.Popen(cmd, cwd=tmp_path / node, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    out = []
    try:
        for p in procs:
            _, err = p.communicate(timeout=CLI_TIMEOUT_S)
            out.append((p.returncode, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return out


SMALL = ["--target", "rpi4", "--epochs", "1", "--teacher-epochs", "1", "--qat-epochs", "1", "--no-scratch",
         "--run-dir", "runs", "--out", "dist"]


@pytest.mark.slow
def test_a_node_that_loaded_other_data_stops_the_job(tmp_path):
    for node, seed in (("a", 0), ("b", 1)):
        (tmp_path / node).mkdir()
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 17, size=(200, 8, 8)).astype(np.uint8)
        y = np.arange(200) % 4
        np.savez(tmp_path / node / "data.npz", x_train=x[:150], y_train=y[:150], x_test=x[150:], y_test=y[150:])
    (a_code, a_err), (b_code, b_err) = _two_nodes(tmp_path, [*SMALL, "--data", "data.npz"])
    both = a_err + b_err
    assert a_code != 0 and b_code != 0, both[-3000:]
    assert "loaded other data than rank 0" in both and "every node must see the same --data" in both
    assert not (tmp_path / "a" / "dist" / "rpi4").exists() and not (tmp_path / "b" / "dist" / "rpi4").exists()


@pytest.mark.slow
def test_a_node_that_loaded_another_teacher_stops_the_job(tmp_path):
    # the same architecture (large enough to have students 10x smaller), other weights on node b
    for node, seed in (("a", 0), ("b", 1)):
        (tmp_path / node).mkdir()
        (tmp_path / node / "teacher.py").write_text(textwrap.dedent(f"""
            import torch
            from torch import nn

            def build():
                torch.manual_seed({seed})
                return nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 128, 3, padding=1),
                                     nn.ReLU(), nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
                                     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))
        """))
    (a_code, a_err), (b_code, b_err) = _two_nodes(tmp_path, [*SMALL, "--teacher", "teacher.py:build"])
    both = a_err + b_err
    assert a_code != 0 and b_code != 0, both[-3000:]
    assert "loaded another teacher than rank 0" in both and "same --teacher" in both
    assert not (tmp_path / "a" / "dist" / "rpi4").exists() and not (tmp_path / "b" / "dist" / "rpi4").exists()


# --- --no-sync-batchnorm reaches QAT and the built-in teacher -----------------------------------


def test_no_sync_batchnorm_reaches_qat_and_the_builtin_teacher(monkeypatch):
    from edgedistill.config import BuildConfig
    from edgedistill.stages import quantize as quantize_stage
    from edgedistill.stages.teacher import builtin_teacher_config

    assert builtin_teacher_config(BuildConfig(sync_batchnorm=False)).sync_batchnorm is False
    assert builtin_teacher_config(BuildConfig()).sync_batchnorm is True
    assert quantize_stage.qat_config(BuildConfig(sync_batchnorm=False)).sync_batchnorm is False
    assert quantize_stage.qat_config(BuildConfig()).sync_batchnorm is True


def test_the_builtin_teachers_cache_key_is_unchanged_by_the_default():
    """Cached teachers stay valid: the default (synced) config keys the cache as before this flag
    reached the teacher; turning it off is another teacher (it learns differently under torchrun)."""
    from edgedistill.config import BuildConfig
    from edgedistill.data.digits import load_digits_dataset
    from edgedistill.stages.teacher import builtin_teacher_config
    from edgedistill.teacher.builtin import DEFAULT_TEACHER_TRAIN, default_teacher_spec, teacher_key

    data = load_digits_dataset()
    spec = default_teacher_spec(data.input_shape_nchw, data.num_classes)
    base = dataclasses.replace(DEFAULT_TEACHER_TRAIN, epochs=BuildConfig().teacher_epochs)
    assert teacher_key(spec, builtin_teacher_config(BuildConfig()), data) == teacher_key(spec, base, data)
    assert teacher_key(spec, builtin_teacher_config(BuildConfig(sync_batchnorm=False)), data) != \
        teacher_key(spec, base, data)


# --- the ARM tolerance check's decision ---------------------------------------------------------


def _parity(steps: list[float], tolerance: int):
    from edgedistill.verify.arm import ArmParity, KernelParity

    return ArmParity(device="board-rpi4", cpu="emulated Cortex-A72", emulated=True, runtime="ai_edge_litert 2.3.0",
                     machine="aarch64", cpu_features=None, samples=64, tolerance_steps=tolerance,
                     kernels=[KernelParity(kernels=name, max_steps=s, identical=s == 0, top1_agreement=1.0,
                                           delegate_applied=name == "XNNPACK")
                              for name, s in zip(("XNNPACK", "builtin kernels"), steps)])


@pytest.mark.parametrize("steps,tolerance,passes", [
    ([0, 0], 0, True), ([0, 2], 2, True), ([0, 3], 2, False), ([1, 0], 0, False), ([2.5, 0], 2, False),
])
def test_the_arm_check_passes_up_to_the_tolerance_and_fails_past_it(steps, tolerance, passes):
    from edgedistill.errors import VerificationError
    from edgedistill.verify.arm import require_passed

    parity = _parity(steps, tolerance)
    assert parity.passed is passes and parity.to_dict()["passed"] is passes
    if passes:
        require_passed(parity)
        return
    with pytest.raises(VerificationError) as err:
        require_passed(parity)
    worst = "builtin kernels" if steps[1] > steps[0] else "XNNPACK"
    assert f"{worst} differ from x86 by {max(steps):g} quantization steps (tolerance {tolerance})" in str(err.value)
    assert "--arm-tolerance-steps" in err.value.hint
