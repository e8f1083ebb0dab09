"""Where edgedistill keeps things between runs, and where it finds its shipped data files.

The user cache (teachers trained on first use, the latency store, calibrations that
``edgedistill calibrate`` fits) lives in ``$EDGEDISTILL_CACHE`` if set, else
``$XDG_CACHE_HOME/edgedistill``, else ``~/.cache/edgedistill``.

The project's own data files sit at the repository root as ``targets/`` and ``calibration/`` (one
source of truth). A wheel ships the same folders as package data, ``edgedistill/_targets`` and
``edgedistill/_calibration`` (pyproject.toml maps them with ``package-dir``). :func:`data_dir` is
the one place that finds them: ``$EDGEDISTILL_TARGETS`` / ``$EDGEDISTILL_CALIBRATION`` if set, else
the package data of an installed wheel, else the checkout's top-level folder (an editable install
or a run from source). The package data is looked up beside this file rather than imported
(``importlib.resources``), because an editable install cannot import a folder without an
``__init__.py`` as a subpackage.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent  # the checkout's root (in a wheel install: site-packages)
_DATA_ENV = {"targets": "EDGEDISTILL_TARGETS", "calibration": "EDGEDISTILL_CALIBRATION"}


def cache_dir() -> Path:
    env = os.environ.get("EDGEDISTILL_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "edgedistill"


def data_dir(kind: str) -> Path:
    """The shipped ``targets`` or ``calibration`` folder (see the module docstring for the order)."""
    env = os.environ.get(_DATA_ENV[kind])
    if env:
        return Path(env).expanduser()
    installed = PACKAGE_DIR / f"_{kind}"
    if installed.is_dir():
        return installed
    return PROJECT_ROOT / kind


def is_installed_data(path: Path) -> bool:
    """Whether ``path`` lies in an installed wheel's package data (not to be written to)."""
    try:
        Path(path).resolve().relative_to(PACKAGE_DIR)
    except ValueError:
        return False
    return True


def targets_dir() -> Path:
    return data_dir("targets")


def calibration_dir() -> Path:
    """Shipped latency calibrations: in a checkout, the repository's ``calibration/``."""
    return data_dir("calibration")


def user_calibration_dir() -> Path:
    """Calibrations fitted on this machine (``edgedistill calibrate`` without ``--write-repo``);
    read before the shipped ones."""
    return cache_dir() / "calibration"
