"""A broken teacher is caught early and loudly, through the real CLI: its file before the data is
read, and a teacher at chance before any training (a warning, and exit 4 under
--min-teacher-accuracy, with no bundle)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_timeouts import CLI_TIMEOUT_S

CHANCE_TEACHER = """
import torch.nn as nn


def build():
    # All-zero weights: every image gets the same logits, so the teacher answers one class.
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    nn.init.zeros_(model[1].weight)
    nn.init.zeros_(model[1].bias)
    return model
"""


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDGEDISTILL_CACHE": str(cwd / "cache"),
           "EDGEDISTILL_LATENCY_STORE": str(cwd / "cache" / "store.jsonl")}
    return subprocess.run([sys.executable, "-m", "edgedistill.cli", "build", "--out", "out", "--run-dir", "run",
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def test_a_missing_teacher_is_named_before_the_data_is_read(tmp_path):
    proc = run(["--teacher", "missing.py:build", "--data", str(tmp_path / "no-such-data")], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "missing.py" in proc.stderr
    assert "no-such-data" not in proc.stderr  # the data was never looked at
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_teacher_at_chance_is_warned_about_and_gated_before_training(tmp_path):
    (tmp_path / "chance_teacher.py").write_text(CHANCE_TEACHER)
    proc = run(["--teacher", "chance_teacher.py:build", "--min-teacher-accuracy", "0.5", "--epochs", "1"], tmp_path)
    assert proc.returncode == 4, proc.stderr[-3000:]
    err = " ".join(proc.stderr.split())  # rich may wrap on narrow terminals
    assert "the teacher is at chance" in err
    assert "teacher validation accuracy" in err and "< required 50.00%" in err
    assert "distill" not in [line.split()[0] for line in proc.stderr.splitlines() if line.strip()]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
