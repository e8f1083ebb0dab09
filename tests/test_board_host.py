"""What the emulated board asks of this machine, said before any work: root, and a qemu-user that
does not crash LiteRT (Debian 12's 7.2 does, in interpreter creation); and which CPU each target's
board emulates."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from edgedistill.board.rootfs import BoardError, check_qemu
from edgedistill.board.server import _pid_in, emulated_cpu
from edgedistill.hardware.targets import load_target


def test_debian_12s_qemu_is_refused_with_what_to_install():
    with pytest.raises(BoardError) as err:
        check_qemu((7, 2))
    assert "crashes ai-edge-litert" in err.value.message and "bookworm-backports" in err.value.hint
    check_qemu((10, 0))
    with pytest.raises(BoardError, match="not installed"):
        check_qemu(None)


@pytest.mark.parametrize("target,cpu", [("rpi4", "cortex-a72"), ("rpi5", "cortex-a76"), ("android-arm64", "cortex-a76")])
def test_each_target_emulates_its_own_core(target, cpu):
    assert emulated_cpu(load_target(target)) == cpu


def test_a_target_that_is_not_aarch64_has_no_board():
    with pytest.raises(BoardError, match="not an aarch64 board"):
        emulated_cpu(load_target("host"))


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to drop root")
def test_without_root_board_up_says_so_and_exits_2(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "EDGEDISTILL_CACHE": str(tmp_path / "cache")}
    tmp_path.chmod(0o777)
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                           "edgedistill", "board", "up", "rpi4"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "needs root" in proc.stderr and "Traceback" not in proc.stderr


def test_a_pid_file_counts_only_once_its_number_is_written(tmp_path):
    # CI once read sshd's pid file in the instant between its creation and its write (int('') failed).
    pid_file = tmp_path / "sshd.pid"
    assert _pid_in(pid_file) is None
    pid_file.write_text("")
    assert _pid_in(pid_file) is None
    pid_file.write_text("12")
    assert _pid_in(pid_file) is None
    pid_file.write_text("1234\n")
    assert _pid_in(pid_file) == 1234
