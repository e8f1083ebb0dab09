"""``edgedistill build`` under torchrun, for real: two gloo processes on this CPU run the whole build
(teacher, distillation, QAT) to one verified bundle that matches a one-process build at the same
global batch and seed; a rank killed mid-training stops the job with exit 7 and nothing
half-written, and the same command run again resumes from the last epoch checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_timeouts import CLI_TIMEOUT_S

# every test here trains, builds or runs a benchmark script: the full suite's, not the fast tier's
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# At this learning rate float rounding (which differs with any change of reduction order, even of
# the thread count in one process) does not grow into another model within 8 epochs, so the
# comparison sees what DDP changes, not chaos.
SMALL = ["--target", "rpi4", "--epochs", "8", "--lr", "0.001", "--teacher-epochs", "4", "--qat-epochs", "1",
         "--bench-runs", "5", "--no-scratch"]


def _torchrun() -> list[str]:
    exe = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    # CPU processes (gloo) even where a GPU is visible; one thread each on this 2-core machine.
    return {**os.environ, "EDGEDISTILL_CACHE": str(root / "cache"), "CUDA_VISIBLE_DEVICES": "",
            "OMP_NUM_THREADS": "1", "EDGEDISTILL_LATENCY_STORE": str(root / "cache" / "latency.jsonl")}


def _build(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def _manifest(cwd: Path) -> dict:
    return json.loads((cwd / "dist" / "rpi4" / "manifest.json").read_text())


def test_two_gloo_processes_build_one_verified_bundle_that_matches_one_process(tmp_path, env):
    one = _build([sys.executable, "-m", "edgedistill", "build", *SMALL], tmp_path / "one", env)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _build([*_torchrun(), "--standalone", "--nproc-per-node", "2", "-m", "edgedistill", "build", *SMALL],
                 tmp_path / "two", env)
    assert two.returncode == 0, two.stderr[-3000:]

    # Rank 0 alone writes: exactly one bundle, no leftovers beside it, and one voice on stderr.
    assert sorted(p.name for p in (tmp_path / "two" / "dist").iterdir()) == ["rpi4"]
    assert two.stderr.count("bundle ready") == 1
    assert "torchrun: 2 processes (gloo)" in two.stderr
    m1, m2 = _manifest(tmp_path / "one"), _manifest(tmp_path / "two")
    t1, t2 = m1["student"]["training"], m2["student"]["training"]
    assert (t1["processes"], t2["processes"]) == (1, 2)
    assert t2["global_batch"] == t1["global_batch"] == 64 and t2["batch_per_process"] == 32
    assert "global batch 64 (32 per process x 2)" in (tmp_path / "two" / "dist" / "rpi4" / "report.md").read_text()
    # The same config learns the same on two processes: the same first epoch (global batch, loss
    # weighting and BatchNorm over the global batch), and the float and int8 models within half a point.
    first = [next(line.split("loss ")[1].split()[0] for line in r.stderr.splitlines() if "distill epoch 1/" in line)
             for r in (one, two)]
    assert first[0] == first[1], first
    for key in ("test_accuracy_fp32", "test_accuracy_qat"):
        assert abs(m1["student"][key] - m2["student"][key]) <= 0.005, (key, m1["student"][key], m2["student"][key])
    a1, a2 = m1["artifacts"]["model.tflite"]["accuracy"], m2["artifacts"]["model.tflite"]["accuracy"]
    assert abs(a1 - a2) <= 0.005, (a1, a2)
    assert m2["artifacts"]["model.tflite"]["agreement"] >= 0.99  # verified, as in one process


def _follower_pid(launcher: int, rank: str) -> int | None:
    """The pid of torchrun's worker with this RANK, among the launcher's descendants."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if f"RANK={rank}".encode() in environ and ppid == launcher:
            return int(proc.name)
    return None


def test_a_killed_rank_stops_the_build_and_the_same_command_resumes_it(tmp_path, env):
    cwd = tmp_path / "job"
    cwd.mkdir()
    cmd = [sys.executable, "-m", "edgedistill", "build", *SMALL, "--epochs", "40", "--nproc", "2"]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + CLI_TIMEOUT_S
        while not list((cwd / "runs").rglob("checkpoint.pt")):  # distillation has finished an epoch
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        pid = _follower_pid(proc.pid, "1")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=CLI_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 7, err[-3000:]
    assert "rank 1 of 2 was killed by SIGKILL" in err
    assert "Traceback" not in err.split("rank 1 of 2")[-1]
    # Nothing half-written: no bundle at all, and no temporary file in the run directory.
    assert not (cwd / "dist" / "rpi4").exists()
    assert [p for p in (cwd / "runs").rglob("*.tmp")] == []
    assert list((cwd / "runs").rglob("checkpoint.pt"))  # kept, to resume from

    again = _build(cmd, cwd, env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "distill: resuming an interrupted run" in again.stderr
    # It went on from the checkpoint: the first epoch it trained was not the first of the 40.
    epochs = [int(line.split("distill epoch ")[1].split("/")[0]) for line in again.stderr.splitlines()
              if "distill epoch " in line]
    assert epochs and epochs[0] > 1 and epochs[-1] == 40
    assert len(_manifest(cwd)["student"]["training"]) and _manifest(cwd)["student"]["training"]["epochs"] == 40
    assert not list((cwd / "runs").rglob("checkpoint.pt"))
