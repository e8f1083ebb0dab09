"""A wheel carries the targets and calibrations (issue 14, item 11): every ``targets/*.toml`` and
``calibration/*.json`` ships as ``edgedistill/_targets`` / ``edgedistill/_calibration``, byte for byte,
and the explicit package list in pyproject.toml leaves no package of the source tree out."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What the wheel is built from, copied so the build leaves no build/ or egg-info in the checkout.
BUILD_INPUTS = ("pyproject.toml", "README.md", "edgedistill", "targets", "calibration")


def _wheel(tmp_path: Path) -> zipfile.ZipFile:
    src = tmp_path / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    out = tmp_path / "wheel"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list(out.glob("edgedistill-*.whl"))
    assert len(wheels) == 1, wheels
    return zipfile.ZipFile(wheels[0])


@pytest.mark.slow
def test_the_wheel_ships_every_target_and_calibration_and_every_module(tmp_path):
    whl = _wheel(tmp_path)
    names = set(whl.namelist())
    targets = sorted((ROOT / "targets").glob("*.toml"))
    calibrations = sorted((ROOT / "calibration").glob("*.json"))
    assert targets and calibrations
    for folder, files in (("edgedistill/_targets", targets), ("edgedistill/_calibration", calibrations)):
        for f in files:
            member = f"{folder}/{f.name}"
            assert member in names, f"{member} missing from the wheel"
            assert whl.read(member) == f.read_bytes()
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "edgedistill").rglob("*.py")
               if "__pycache__" not in p.parts}
    missing = sorted(modules - names)
    assert not missing, f"not in the wheel (add the package to [tool.setuptools] packages): {missing}"


def test_calibrate_write_repo_refuses_to_rewrite_installed_package_data(tmp_path, monkeypatch):
    """In a wheel install there is no repository: --write-repo is refused before measuring anything."""
    import edgedistill.paths as paths
    from edgedistill.errors import InputError
    from edgedistill.hardware.calibrate import calibrate
    from edgedistill.hardware.targets import load_target

    package = tmp_path / "site-packages" / "edgedistill"
    (package / "_calibration").mkdir(parents=True)
    monkeypatch.setattr(paths, "PACKAGE_DIR", package)
    monkeypatch.setenv("EDGEDISTILL_CALIBRATION", str(package / "_calibration"))
    with pytest.raises(InputError, match="--write-repo") as info:
        calibrate(load_target("host"), quick=True, write_repo_file=True)
    assert str(paths.user_calibration_dir() / "host.json") in info.value.hint
    assert not list((package / "_calibration").iterdir())
