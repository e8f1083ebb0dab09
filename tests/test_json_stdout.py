"""With ``--json`` stdout carries the JSON document alone (``json.loads`` of all of it works);
progress and whatever libraries print, from Python or natively, goes to stderr."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from bench_support.models import tiny_models

ROOT = Path(__file__).resolve().parents[1]


def _run(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return _run(sys.executable, "-m", "edgedistill.cli", *args)


def test_targets_show_json():
    done = _cli("targets", "show", "host", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["name"] == "host"


def test_select_json():
    done = _cli("select", "--target", "android-arm64", "--json")
    assert done.returncode == 0, done.stderr  # the digits default has students that fit
    payload = json.loads(done.stdout)
    assert payload["candidates"] and payload["chosen"] is not None


def test_bench_json_one_and_several_devices(tmp_path):
    models = tiny_models()
    done = _cli("bench", str(models.tflite_dynamic), "--device", "local", "--json", "--runs", "3", "--warmup", "1",
                "--no-store")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["median_ms"] > 0
    done = _cli("bench", str(models.onnx_dynamic), "-d", "local", "-d", "local", "--json", "--runs", "3",
                "--warmup", "1", "--no-store")
    assert done.returncode == 0, done.stderr
    assert [row["ok"] for row in json.loads(done.stdout)] == [True, True]


def test_verify_json_of_a_path_that_is_not_a_bundle(tmp_path):
    done = _cli("verify", str(tmp_path / "no-bundle-here"), "--json")
    assert done.returncode == 2
    assert json.loads(done.stdout)["status"] == "input_error"


def test_build_json_when_the_build_stops_early(tmp_path):
    done = _cli("build", "--json", "-q", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "dist"),
                "--run-dir", str(tmp_path / "run"))
    assert done.returncode == 2, done.stderr
    assert json.loads(done.stdout)["exit_code"] == 2


# --- the helper every --json entry point uses --------------------------------------------------------------

NOISY = textwrap.dedent("""
    import ctypes, json, os, sys
    from edgedistill.streams import stdout_to_stderr

    with stdout_to_stderr({enabled}):
        print("python progress line")
        sys.stdout.flush()
        os.write(1, b"native progress line\\n")
        libc = ctypes.CDLL(None)
        libc.printf(b"C stdio progress line\\n")  # buffered by C stdio: flushed before fd 1 comes back
        with stdout_to_stderr():  # nested: still stderr
            print("nested line")
        print("after nested")
    print(json.dumps({{"ok": True}}))
""")


def test_stdout_to_stderr_moves_python_native_and_c_stdio_prints():
    done = _run(sys.executable, "-c", NOISY.format(enabled=True), timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"ok": True}
    for line in ("python progress line", "native progress line", "C stdio progress line", "nested line",
                 "after nested"):
        assert line in done.stderr


def test_stdout_to_stderr_disabled_leaves_stdout_alone():
    done = _run(sys.executable, "-c", NOISY.format(enabled=False), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "native progress line" in done.stdout and "python progress line" in done.stdout


def test_quiet_native_stderr_drops_only_the_delegate_line():
    code = textwrap.dedent("""
        import os, sys
        from edgedistill.streams import quiet_native_stderr

        print("before", file=sys.stderr, flush=True)
        with quiet_native_stderr():
            os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
            os.write(2, b"ERROR: something real\\n")
            print("python warning", file=sys.stderr)
        print("after", file=sys.stderr, flush=True)
    """)
    done = _run(sys.executable, "-c", code, timeout=120)
    assert done.returncode == 0
    assert done.stderr.splitlines() == ["before", "ERROR: something real", "python warning", "after"]


# --- scripts with --json -------------------------------------------------------------------------------------

# bench_latency_model.py exports and times ~40 models (minutes): stand in for the converters with
# ones that print as the real ones do (from Python and natively on fd 1) and time nothing.
STUBBED_LATENCY_SCRIPT = textwrap.dedent("""
    import os, runpy, sys
    from types import SimpleNamespace
    import edgedistill.hardware.calibrate as calibrate

    def export_all(jobs, input_shape, workers=1, progress=None):
        print("Converting model ... 100%")
        sys.stdout.flush()
        os.write(1, b"native converter progress\\n")

    def measure(path, threads, warmup, runs, rounds=2):
        ms = 0.01 + sum(path.name.encode()) % 997 / 1e4
        return SimpleNamespace(median_ms=ms, extra={}, to_dict=lambda: {"median_ms": ms})

    calibrate.export_all, calibrate.measure = export_all, measure
    sys.argv = ["bench_latency_model.py", "--target", "host", "--json"]
    runpy.run_path(sys.argv_script, run_name="__main__")
""").replace("sys.argv_script", repr(str(ROOT / "scripts" / "bench_latency_model.py")))


def test_bench_latency_model_script_json_is_pure():
    done = _run(sys.executable, "-c", STUBBED_LATENCY_SCRIPT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(done.stdout)
    assert payload["target"] == "host" and payload["n_fit"] > 0
    assert "native converter progress" in done.stderr and "Converting model" in done.stderr


def test_every_script_with_json_uses_the_helper():
    """Each script with --json moves stdout aside while it works (the tests above cover how)."""
    scripts = [p for p in sorted((ROOT / "scripts").glob("*.py")) if '"--json"' in p.read_text()]
    assert {p.name for p in scripts} >= {"bench_latency_model.py", "bench_distill.py", "bench_byo.py"}
    for path in scripts:
        assert "stdout_to_stderr(args.json)" in path.read_text(), path.name
