"""The emulated aarch64 board, for real: ``edgedistill board up rpi4`` starts sshd inside the cached
arm64 rootfs (qemu-user via binfmt); the ssh runner benchmarks on it (timings marked emulated, never
stored); a small bundle's model runs on aarch64 XNNPACK bit-identical to x86 and on the builtin
kernels within tolerance, recorded in the manifest and report; a disagreement above the tolerance
makes the build exit 3 with nothing written.

Needs root, qemu-user >= 8 and the board's rootfs built once (``.ci/run`` builds or restores it;
by hand: ``edgedistill board up rpi4``, about 7 minutes the first time). Without them every test here
is skipped, with the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_timeouts import CLI_TIMEOUT_S

from edgedistill.board import rootfs

TINY = ["--target", "rpi4", "--epochs", "2", "--teacher-epochs", "2", "--qat-epochs", "1", "--bench-runs", "5",
        "--no-scratch"]


pytestmark = [pytest.mark.slow, pytest.mark.skipif(rootfs.unavailable_reason() is not None, reason=rootfs.unavailable_reason() or "")]
BOARDS = str(rootfs.board_root().parent)  # read now: each test's own cache is set up later (conftest)


def _cli(args: list[str], env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgedistill", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=CLI_TIMEOUT_S)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("board")
    return {**os.environ, "EDGEDISTILL_CACHE": str(root / "cache"), "EDGEDISTILL_BOARDS": BOARDS,
            "EDGEDISTILL_LATENCY_STORE": str(root / "cache" / "latency.jsonl")}


@pytest.fixture(scope="module")
def board(env):
    up = _cli(["board", "up", "rpi4", "--json"], env)
    assert up.returncode == 0, up.stderr[-3000:]
    state = json.loads(up.stdout)
    yield state
    down = _cli(["board", "down", "rpi4"], env)
    assert down.returncode == 0 and "stopped" in down.stdout, down.stdout + down.stderr


def _ssh(board: dict, command: str) -> str:
    alias = board["spec"].removeprefix("ssh://")
    out = subprocess.run(["ssh", "-F", board["ssh_config"], alias, command], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_status_shows_the_board_and_its_devices_entry(board, env):
    st = _cli(["board", "status", "rpi4"], env)
    assert st.returncode == 0, st.stdout + st.stderr
    assert "[devices.board-rpi4]" in st.stdout and board["spec"] in st.stdout and "emulated = true" in st.stdout
    assert "[devices.board-rpi4]" in Path(board["devices_file"]).read_text()
    assert board["runtimes"]["ai-edge-litert"] == "2.3.0"  # the exact tags got 2.x, not 1.4.0


def test_the_board_is_aarch64_on_the_targets_core(board):
    out = _ssh(board, "uname -m; echo $QEMU_CPU; grep -m1 -i '^features' /proc/cpuinfo").splitlines()
    assert out[0] == "aarch64" and out[1] == "cortex-a72"
    features = out[2].split(":", 1)[1].split()
    assert "asimd" in features and "sve" not in features and "atomics" not in features  # a Pi 4 has neither


def test_the_ssh_runner_benchmarks_on_the_board_and_keeps_no_timing(board, env, tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_support.models import tiny_models

    store = tmp_path / "store.jsonl"
    out = _cli(["bench", str(tiny_models().tflite_dynamic), "--device", "board-rpi4", "--devices-file",
                board["devices_file"], "--runs", "5", "--warmup", "1", "--store", str(store), "--json"], env)
    assert out.returncode == 0, out.stderr[-3000:]
    m = json.loads(out.stdout)
    assert m["emulated"] is True
    assert m["device_info"]["machine"] == "aarch64" and m["runtime_version"] == "2.3.0"
    assert m["extra"]["delegate_applied"] is True  # XNNPACK was applied, and said so
    assert not store.exists() or store.read_text().strip() == ""  # emulated timings never enter the store


@pytest.fixture(scope="module")
def built(board, env, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("build")
    proc = _cli(["build", *TINY], env, cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd, proc


def test_a_build_verifies_its_model_on_aarch64_kernels(built):
    cwd, proc = built
    manifest = json.loads((cwd / "dist/rpi4/manifest.json").read_text())
    arm = manifest["verification_arm"]
    assert arm["passed"] and arm["emulated"] and arm["machine"] == "aarch64" and arm["samples"] == 64
    kernels = {k["kernels"]: k for k in arm["kernels"]}
    assert kernels["XNNPACK"]["identical"] and kernels["XNNPACK"]["delegate_applied"] is True
    assert kernels["builtin kernels"]["max_steps"] <= 2 and kernels["builtin kernels"]["delegate_applied"] is False
    assert min(k["top1_agreement"] for k in arm["kernels"]) == 1.0
    report = (cwd / "dist/rpi4/report.md").read_text()
    assert "On ARM: aarch64 (emulated Cortex-A72): XNNPACK bit-identical" in report
    assert "aarch64 (emulated Cortex-A72)" in proc.stderr


def test_a_disagreement_on_arm_fails_the_build_with_nothing_written(built, env, tmp_path):
    cwd, _ = built
    manifest = json.loads((cwd / "dist/rpi4/manifest.json").read_text())
    steps = max(k["max_steps"] for k in manifest["verification_arm"]["kernels"])
    if steps == 0:
        pytest.skip("every kernel was bit-identical on this model: no tolerance below it to cross")
    out = tmp_path / "dist"
    proc = _cli(["build", *TINY, "--arm-tolerance-steps", str(int(steps) - 1), "--out", str(out)], env, cwd)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "on ARM" in proc.stderr and "quantization steps" in proc.stderr
    assert not (out / "rpi4").exists()


def test_timings_on_the_emulated_board_are_marked_and_never_stored_or_used(built, board, env, tmp_path):
    cwd, _ = built
    store = tmp_path / "store.jsonl"
    proc = _cli(["build", *TINY, "--bench-device", "board-rpi4", "--bench-runs", "3", "--out", str(tmp_path / "dist")],
                {**env, "EDGEDISTILL_DEVICES": board["devices_file"], "EDGEDISTILL_LATENCY_STORE": str(store)}, cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "emulated board (board-rpi4)" in proc.stderr and "not used to re-choose" in proc.stderr
    manifest = json.loads((tmp_path / "dist/rpi4/manifest.json").read_text())
    assert {a["latency"]["measured_on"] for a in manifest["artifacts"].values()} == {"emulated"}
    assert manifest["feedback_rounds"] == []
    assert "an emulated board: its timings mean nothing for speed" in (tmp_path / "dist/rpi4/report.md").read_text()
    assert not store.exists() or store.read_text().strip() == ""
