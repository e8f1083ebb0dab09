"""Target files are checked strictly at load (issue 14, item 4), and a user's own target with no
calibration gets a latency model derived from the nearest shipped one, or a refusal saying what to run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgedistill.errors import InputError
from edgedistill.hardware.latency_model import load_latency_model
from edgedistill.hardware.targets import load_target
from edgedistill.models.resnet import ResNetSpec
from edgedistill.paths import calibration_dir
from edgedistill.select.candidates import select_student

GOOD = """\
name = "my-pi"
description = "a user's own board"

[hardware]
cpu = "2x Cortex-A72"
isa = "aarch64"
abi = "aarch64"

[runtime]
name = "litert"
delegate = "xnnpack"
threads = 2
precision = "int8"

[budgets]
latency_ms = 10.0
model_size_kb = 128.0
peak_memory_mb = 64.0

[device]
kind = "ssh"
default = ""
"""


def _write(tmp_path: Path, text: str, name: str = "my-pi.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _refused(path: Path) -> InputError:
    with pytest.raises(InputError) as info:
        load_target(str(path))
    assert str(path) in str(info.value), "the message names the file"
    return info.value


def test_a_good_user_target_loads(tmp_path):
    t = load_target(str(_write(tmp_path, GOOD)))
    assert (t.name, t.threads, t.budgets.latency_ms, t.device_kind) == ("my-pi", 2, 10.0, "ssh")


def test_an_unknown_key_is_named_with_the_valid_keys_in_the_hint(tmp_path):
    err = _refused(_write(tmp_path, GOOD.replace("threads = 2", "treads = 8")))
    assert "unknown key runtime.treads (did you mean runtime.threads?)" in err.message
    assert err.hint is not None and "valid keys in [runtime]: name, delegate, threads, precision" in err.hint
    err = _refused(_write(tmp_path, GOOD + "\n[extras]\nfoo = 1\n"))
    assert "unknown key extras" in err.message and "valid keys at the top level" in err.hint


@pytest.mark.parametrize("old, new, key", [
    ("threads = 2", "threads = 0", "runtime.threads"),
    ("threads = 2", "threads = 2.5", "runtime.threads"),
    ("threads = 2", 'threads = "4"', "runtime.threads"),
    ("threads = 2", "threads = true", "runtime.threads"),
    ("latency_ms = 10.0", "latency_ms = -1.0", "budgets.latency_ms"),
    ("latency_ms = 10.0", "latency_ms = 0", "budgets.latency_ms"),
    ("latency_ms = 10.0", "latency_ms = inf", "budgets.latency_ms"),
    ("model_size_kb = 128.0", 'model_size_kb = "128"', "budgets.model_size_kb"),
    ("peak_memory_mb = 64.0", "peak_memory_mb = nan", "budgets.peak_memory_mb"),
    ('precision = "int8"', 'precision = "fp16"', "runtime.precision"),
    ('name = "litert"', 'name = "tflite"', "runtime.name"),
    ('delegate = "xnnpack"', 'delegate = "cuda"', "runtime.delegate"),
    ('delegate = "xnnpack"', 'delegate = "gpu"', "runtime.delegate"),  # gpu needs an adb device
    ('kind = "ssh"', 'kind = "usb"', "device.kind"),
    ('name = "my-pi"', 'name = "../escape"', "name"),
    ('cpu = "2x Cortex-A72"', "cpu = 2", "hardware.cpu"),
    ("latency_ms = 10.0\n", "", "budgets.latency_ms"),
])
def test_bad_types_and_ranges_are_refused_naming_the_key(tmp_path, old, new, key):
    assert old in GOOD
    err = _refused(_write(tmp_path, GOOD.replace(old, new, 1)))
    assert key in err.message


def test_a_missing_section_is_named(tmp_path):
    err = _refused(_write(tmp_path, GOOD.split("[budgets]")[0]))
    assert "missing section [budgets]" in err.message
    err = _refused(_write(tmp_path, "runtime = 'litert'\n" + GOOD.replace("[runtime]", "[runtime_]")))
    assert "runtime must be a [table]" in err.message


def test_gpu_delegate_is_fine_on_an_adb_device(tmp_path):
    text = GOOD.replace('delegate = "xnnpack"', 'delegate = "gpu"').replace('kind = "ssh"', 'kind = "adb"')
    assert load_target(str(_write(tmp_path, text))).delegate == "gpu"


def test_build_with_a_bad_target_exits_2_before_any_work(tmp_path):
    bad = _write(tmp_path, GOOD.replace("latency_ms = 10.0", "latency_ms = -5.0"), "bad.toml")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgedistill.cli", "build", "--target", str(bad),
                           "--out", str(tmp_path / "dist"),
                                 "--run-dir", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=dict(os.environ))
    seconds = time.perf_counter() - started
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "bad.toml" in out and "budgets.latency_ms" in out and "Traceback" not in out
    # nothing was loaded, trained or written: the target is read first
    assert "digits" not in out and "teacher" not in out.lower()
    assert not (tmp_path / "dist").exists() and not (tmp_path / "runs").exists()
    assert seconds < 60, f"took {seconds:.1f} s"  # imports only; a loaded 2-core machine included


# --- a latency model for a user's own target ------------------------------------------------------


def test_a_target_without_calibration_derives_from_the_nearest_shipped_one(tmp_path):
    from edgedistill.hardware.latency_model import latency_model_for

    target = load_target(str(_write(tmp_path, GOOD)))
    model = latency_model_for(target)
    # same runtime, delegate, precision and ABI: rpi4 and rpi5 (4 threads each) tie; the name decides
    assert model.derived_from == "rpi4"
    assert model.describe().startswith("my-pi latency model derived from rpi4's calibration "
                                       "(no calibration/my-pi.json; nearest shipped litert target:")
    rpi4 = load_latency_model("rpi4")
    spec = ResNetSpec(1, 10, (12, 24, 48), (1, 1, 1))
    assert model.predict(spec, (1, 8, 8), "int8", 2) == pytest.approx(rpi4.predict(spec, (1, 8, 8), "int8", 2))

    teacher = ResNetSpec(1, 10, (32, 64, 128), (3, 3, 3))
    sel = select_student(teacher, (1, 8, 8), target, 10**9, 1.0)
    assert "derived from rpi4's calibration (no calibration/my-pi.json" in sel.latency_model
    assert all(c.predicted_latency_ms is not None for c in sel.candidates)


def test_a_user_calibration_in_the_cache_comes_before_the_shipped_one(tmp_path):
    from edgedistill.hardware.latency_model import latency_model_for
    from edgedistill.paths import user_calibration_dir

    target = load_target(str(_write(tmp_path, GOOD)))
    user_calibration_dir().mkdir(parents=True, exist_ok=True)
    mine = user_calibration_dir() / "my-pi.json"
    shutil.copy(calibration_dir() / "host.json", mine)
    model = latency_model_for(target)
    assert not model.derived_from and model.origin == str(mine)
    assert str(mine) in model.describe()
    host = json.loads((calibration_dir() / "host.json").read_text())
    assert model.coefficients == host["latency_model"]["coefficients"]


def test_no_shipped_target_of_the_runtime_is_refused_with_what_to_run(tmp_path, monkeypatch):
    from edgedistill.hardware.latency_model import latency_model_for

    empty = tmp_path / "no-targets"
    empty.mkdir()
    monkeypatch.setenv("EDGEDISTILL_TARGETS", str(empty))
    local = load_target(str(_write(tmp_path, GOOD.replace('kind = "ssh"', 'kind = "local"'))))
    with pytest.raises(InputError, match="no shipped litert target") as info:
        latency_model_for(local)
    assert f"edgedistill calibrate --target {local.path}" in info.value.hint
    assert "calibration/my-pi.json" in info.value.hint
    remote = load_target(str(_write(tmp_path, GOOD, "remote.toml")))
    with pytest.raises(InputError) as info:
        select_student(ResNetSpec(1, 10, (32, 64, 128), (3, 3, 3)), (1, 8, 8), remote, 10**9, 1.0)
    assert "calibration/my-pi.json" in info.value.hint
