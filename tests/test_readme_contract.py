"""The README's first commands are the contract with a new user: what they need is said beside them,
and the test run says up front what it will skip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_says_what_the_test_command_needs_beside_it():
    text = (ROOT / "README.md").read_text()
    after = text[text.index(".venv/bin/python -m pytest"):][:800]
    assert "openssh-server" in after and "skipped" in after


def test_the_test_run_header_says_whether_the_ssh_tests_run(tmp_path):
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    proc = subprocess.run([sys.executable, "-m", "pytest", str(tmp_path), "-p", "no:cacheprovider"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "edgedistill: " in proc.stdout and "ssh device-runner tests" in proc.stdout
