#!/usr/bin/env bash
# A non-editable install works (issue 14, item 11): build the wheel, install it into a fresh venv,
# and from a directory outside the checkout list the targets and make a tiny build for host.
#   .ci/wheel_smoke.sh [PYTHON]     PYTHON builds the wheel [default: .venv/bin/python]
# The wheel is built from a copy of the build inputs, so no build/ or egg-info lands in the
# checkout and nothing stale from an earlier build/ can slip into the wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${1:-.venv/bin/python}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
started=$SECONDS

mkdir "$tmp/src"
tar -cf - --exclude=__pycache__ --exclude='*.pyc' pyproject.toml README.md edgedistill targets calibration \
  | tar -xf - -C "$tmp/src"
"$py" -m pip wheel -q --no-deps -w "$tmp" "$tmp/src"
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q torch==2.13.0
"$tmp/venv/bin/pip" install -q "$tmp"/edgedistill-*.whl
echo "wheel smoke: wheel built and installed ($((SECONDS - started)) s)"

# Outside the checkout, with a cache of its own and no overrides: targets and calibrations can
# only come from the installed package.
cd "$tmp"
export EDGEDISTILL_CACHE="$tmp/cache"
unset EDGEDISTILL_TARGETS EDGEDISTILL_CALIBRATION EDGEDISTILL_LATENCY_STORE
"$tmp/venv/bin/python" - <<'PY'
import sys

import edgedistill
from edgedistill.paths import calibration_dir, is_installed_data, targets_dir

for d in (targets_dir(), calibration_dir()):
    if not is_installed_data(d):
        sys.exit(f"wheel smoke: {d} is not the installed package data (edgedistill from {edgedistill.__file__})")
PY
"$tmp/venv/bin/edgedistill" targets
# Two epochs, as tests/test_build_e2e.py's tiny build: one leaves the teacher near chance, and a
# student that barely learned fails the builtin-vs-XNNPACK agreement check (exit 3).
"$tmp/venv/bin/edgedistill" build --target host --epochs 2 --teacher-epochs 2 --qat-epochs 1 --no-scratch \
  --bench-runs 3 --max-rounds 1 --out "$tmp/dist" --run-dir "$tmp/runs"
if [ ! -f "$tmp/dist/host/manifest.json" ]; then
  echo "wheel smoke: the build wrote no dist/host/manifest.json" >&2
  exit 1
fi
echo "wheel smoke: ok ($((SECONDS - started)) s)"
