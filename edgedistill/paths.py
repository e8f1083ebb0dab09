"""Where edgedistill keeps things between runs.

The user cache (teachers trained on first use, the latency store) lives in
``$EDGEDISTILL_CACHE`` if set, else ``$XDG_CACHE_HOME/edgedistill``, else ``~/.cache/edgedistill``.
The project's own data files (``targets/``, ``calibration/``) sit at the repository root beside the
package; ``$EDGEDISTILL_TARGETS`` / ``$EDGEDISTILL_CALIBRATION`` point elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    env = os.environ.get("EDGEDISTILL_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "edgedistill"


def targets_dir() -> Path:
    return Path(os.environ.get("EDGEDISTILL_TARGETS", PROJECT_ROOT / "targets"))


def calibration_dir() -> Path:
    return Path(os.environ.get("EDGEDISTILL_CALIBRATION", PROJECT_ROOT / "calibration"))
