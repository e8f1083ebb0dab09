"""Ctrl-C, SIGINT and SIGTERM end a build with exit 130 and say so: the "interrupted ... rerun to
resume" line on stderr (and with ``--json`` the summary with status "interrupted" on stdout), and
no bundle. The real CLI is started on the digits and signalled once training has begun.

That the same command then resumes from the finished stages and the last epoch checkpoint is
tested elsewhere, for real: tests/test_trainer.py (a run killed after epoch 2 resumes bitwise
equal), tests/test_pipeline_stages.py and tests/test_build_ddp.py (a killed rank, then the same
command resumes).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TRAINING = re.compile(r"epoch \d+/\d+")  # a plain progress line: training has begun
START_TIMEOUT_S = 900  # the data, and the first epoch of the built-in teacher, on a loaded machine
EXIT_TIMEOUT_S = 120


def _edgedistill() -> list[str]:
    script = Path(sys.executable).parent / "edgedistill"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "edgedistill.cli"]


def _interrupted_build(tmp_path: Path, signum: int, *extra: str) -> tuple[int, str, str]:
    """Start a digits build, send ``signum`` once an epoch line shows training began, and return
    its exit code, stdout and stderr."""
    env = {**os.environ, "EDGEDISTILL_CACHE": str(tmp_path / "cache"),
           "EDGEDISTILL_LATENCY_STORE": str(tmp_path / "cache" / "latency_store.jsonl"),
           "EDGEDISTILL_PROGRESS_INTERVAL": "0"}  # one line per epoch: the first one is the cue
    proc = subprocess.Popen(
        [*_edgedistill(), "build", "--target", "host", "--out", str(tmp_path / "dist"),
         "--run-dir", str(tmp_path / "run"), "--no-scratch", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
        # As from a terminal's foreground: a test run started in the background (`pytest &` in a
        # script) has SIGINT ignored, and the build would inherit that and never see the signal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    stderr: list[str] = []
    began = threading.Event()

    def read_stderr() -> None:
        for line in proc.stderr:
            stderr.append(line)
            if TRAINING.search(line):
                began.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    stdout = ""
    try:
        assert began.wait(START_TIMEOUT_S), "training never began:\n" + "".join(stderr)[-3000:]
        proc.send_signal(signum)
        stdout = proc.stdout.read()
        code = proc.wait(EXIT_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(30)
    return code, stdout, "".join(stderr)


def _assert_interrupted(tmp_path: Path, code: int, err: str) -> None:
    assert code == 130, err[-3000:]
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert lines and "rerun to resume" in lines[-1], err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert not (tmp_path / "dist" / "host").exists()  # no bundle
    assert not list((tmp_path / "dist").glob("*/*.tflite"))  # nor a staging folder beside it


def test_sigint_exits_130_and_says_rerun_to_resume(tmp_path):
    code, out, err = _interrupted_build(tmp_path, signal.SIGINT)
    _assert_interrupted(tmp_path, code, err)
    assert out == ""


def test_sigterm_with_json_exits_130_with_the_interrupted_summary(tmp_path):
    code, out, err = _interrupted_build(tmp_path, signal.SIGTERM, "--json")
    _assert_interrupted(tmp_path, code, err)
    summary = json.loads(out)
    assert summary["status"] == "interrupted" and summary["exit_code"] == 130
    assert summary["bundle"] is None
