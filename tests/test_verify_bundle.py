"""``edgedistill verify BUNDLE`` trusts nothing but the manifest and names the file that broke it.

One tiny bundle is built per session of this module. Its run directory and teacher cache live in a
folder keyed by the package's source, so a rerun with unchanged code reuses the finished stages
(seconds); a cold build is dominated by the int8 TFLite conversion (~2 min on 2 cores).
"""

import fcntl
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

import edgedistill
from edgedistill.errors import EXIT_INPUT, EXIT_OK, EXIT_VERIFY, InputError
from edgedistill.fsutil import sha256_file
from edgedistill.verify.bundle import verify_bundle, verify_command

ARTIFACTS = ("model.tflite", "model_fp32.tflite", "model.onnx", "model_int8.onnx")


def _source_key() -> str:
    root = Path(edgedistill.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="module")
def built_bundle():
    from edgedistill.config import BuildConfig
    from edgedistill.pipeline import build
    from edgedistill.progress import Reporter

    work = Path(tempfile.gettempdir()) / "edgedistill-test-bundle" / _source_key()
    work.mkdir(parents=True, exist_ok=True)
    mp = pytest.MonkeyPatch()
    # module scope runs before conftest's per-test isolation: never touch the user's cache or store
    mp.setenv("EDGEDISTILL_CACHE", str(work / "cache"))
    mp.setenv("EDGEDISTILL_LATENCY_STORE", str(work / "cache" / "latency_store.jsonl"))
    try:
        with open(work / ".lock", "w") as lock:  # parallel test workers build it once
            fcntl.flock(lock, fcntl.LOCK_EX)
            cfg = BuildConfig(out=str(work / "dist"), run_dir=str(work / "run"), epochs=2, teacher_epochs=2,
                              qat_epochs=1, bench_runs=5, bench_warmup=2, scratch_baseline=False)
            result = build(cfg, Reporter(quiet=True))
            fcntl.flock(lock, fcntl.LOCK_UN)
    finally:
        mp.undo()
    return result.bundle_dir


@pytest.fixture
def bundle(built_bundle, tmp_path):
    """A private copy each test may damage."""
    return Path(shutil.copytree(built_bundle, tmp_path / "android-arm64"))


def failing(report):
    return {(c.subject, c.check) for c in report.checks if not c.passed}


def rewrite_manifest_hash(bundle: Path, name: str) -> None:
    """Make the manifest agree with a replaced file, as a careless or malicious edit would."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][name] = {"bytes": (bundle / name).stat().st_size, "sha256": sha256_file(bundle / name)}
    (bundle / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.slow
def test_a_freshly_built_bundle_verifies(bundle, capsys):
    report = verify_bundle(bundle)
    assert report.passed, report.problems
    assert sorted(p.file for p in report.parity) == sorted(ARTIFACTS)
    assert all(p.agreement >= 0.99 and p.samples > 0 for p in report.parity)
    assert {c.check for c in report.checks} >= {"manifest", "sha256", "loads", "io", "parity", "dtypes", "labels"}
    assert verify_command(bundle, json_out=True) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "ok" and out["exit_code"] == 0 and out["problems"] == []
    assert {p["file"] for p in out["parity"]} == set(ARTIFACTS)


@pytest.mark.slow
def test_a_flipped_byte_in_the_int8_model_fails_naming_it(bundle):
    path = bundle / "model.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    report = verify_bundle(bundle)
    assert not report.passed
    assert ("model.tflite", "sha256") in failing(report)
    assert any(p.startswith("model.tflite: sha256 mismatch") for p in report.problems)
    # a damaged flatbuffer is never handed to the interpreter
    assert ("model.tflite", "loads") in failing(report)
    assert {p.file for p in report.parity} == set(ARTIFACTS) - {"model.tflite"}
    assert verify_command(bundle, json_out=False) == EXIT_VERIFY


@pytest.mark.slow
def test_a_truncated_file_fails_naming_it(bundle):
    path = bundle / "model.onnx"
    path.write_bytes(path.read_bytes()[:1000])
    report = verify_bundle(bundle)
    assert ("model.onnx", "bytes") in failing(report)
    assert any(p.startswith("model.onnx: 1000 bytes, the manifest says") for p in report.problems)


@pytest.mark.slow
def test_a_bundle_without_its_manifest_is_not_a_bundle_exit_2(bundle, capsys):
    (bundle / "manifest.json").unlink()
    with pytest.raises(InputError, match="has no manifest.json"):
        verify_bundle(bundle)
    assert verify_command(bundle, json_out=True) == EXIT_INPUT
    assert json.loads(capsys.readouterr().out)["status"] == "input_error"


@pytest.mark.slow
def test_missing_and_unlisted_files_are_named(bundle):
    (bundle / "labels.txt").unlink()
    (bundle / "extra.bin").write_bytes(b"x")
    failed = failing(verify_bundle(bundle))
    assert ("labels.txt", "listed") in failed and ("extra.bin", "unlisted") in failed


@pytest.mark.slow
def test_a_swapped_in_float_model_is_caught_even_with_a_consistent_hash(bundle):
    shutil.copyfile(bundle / "model_fp32.tflite", bundle / "model.tflite")
    rewrite_manifest_hash(bundle, "model.tflite")
    report = verify_bundle(bundle)
    failed = failing(report)
    assert ("model.tflite", "io") in failed  # takes float32, the manifest promises int8
    assert ("model.tflite", "dtypes") in failed  # not fully integer any more
    assert any("not fully integer" in p for p in report.problems)


@pytest.mark.slow
def test_parity_fails_when_predictions_no_longer_match(bundle):
    with np.load(bundle / "verification_sample.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["top1/model_int8.onnx"] = (arrays["top1/model_int8.onnx"] + 1) % 10
    np.savez(bundle / "verification_sample.npz", **arrays)
    rewrite_manifest_hash(bundle, "verification_sample.npz")
    report = verify_bundle(bundle)
    assert failing(report) == {("model_int8.onnx", "parity")}
    assert "top-1 agreement 0.00%" in report.problems[0]


def test_a_path_that_is_not_a_bundle_is_an_input_error(tmp_path, capsys):
    with pytest.raises(InputError):
        verify_bundle(tmp_path / "nope")
    assert verify_command(tmp_path / "nope", json_out=True) == EXIT_INPUT
    assert json.loads(capsys.readouterr().out)["status"] == "input_error"


# --- manifests that do not read as one: bad input (exit 2), with the JSON report under --json -------


def _edgedistill() -> list[str]:
    import sys

    script = Path(sys.executable).parent / "edgedistill"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "edgedistill.cli"]


def _verify_cli(folder: Path, *args: str):
    import subprocess

    return subprocess.run([*_edgedistill(), "verify", str(folder), *args], capture_output=True, text=True,
                          timeout=300)


MODEL_ENTRY = {"format": "tflite", "precision": "int8"}


@pytest.mark.parametrize("manifest,problem", [
    ({"files": [], "artifacts": {"model.tflite": MODEL_ENTRY}, "model": "model.tflite"}, "files is a JSON list"),
    ({"files": {"model.tflite": "abc"}, "artifacts": {"model.tflite": MODEL_ENTRY}, "model": "model.tflite"},
     "files['model.tflite'] is 'abc'"),
    ({"files": {}, "artifacts": ["model.tflite"], "model": "model.tflite"}, "artifacts is a JSON list"),
    ({"files": {}, "artifacts": {"model.tflite": "int8"}, "model": "model.tflite"}, "artifacts['model.tflite']"),
    ({"files": {}, "artifacts": {"model.tflite": MODEL_ENTRY}, "model": ["model.tflite"]}, "main model"),
    ({"files": {}, "artifacts": {}}, "lacks model"),
    ([1, 2], "a JSON list, not an object"),
])
def test_a_manifest_of_the_wrong_shape_is_an_input_error(tmp_path, manifest, problem):
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="not a bundle manifest") as err:
        verify_bundle(tmp_path)
    assert problem in err.value.message and str(tmp_path / "manifest.json") in err.value.message
    proc = _verify_cli(tmp_path, "--json")
    assert proc.returncode == EXIT_INPUT, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "input_error" and doc["exit_code"] == EXIT_INPUT and problem in doc["reason"]
    proc = _verify_cli(tmp_path)
    assert proc.returncode == EXIT_INPUT and "Traceback" not in proc.stderr and problem in proc.stderr


@pytest.mark.parametrize("content", [None, "{not json", "\xff\xfe"])
def test_a_folder_that_is_not_a_bundle_exits_2(tmp_path, content):
    if content is not None:
        (tmp_path / "manifest.json").write_bytes(content.encode("latin-1"))
    (tmp_path / "model.tflite").write_bytes(b"x")
    proc = _verify_cli(tmp_path, "--json")
    assert proc.returncode == EXIT_INPUT, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["status"] == "input_error"
    proc = _verify_cli(tmp_path)
    assert proc.returncode == EXIT_INPUT and "Traceback" not in proc.stderr
    assert "manifest.json" in proc.stderr
