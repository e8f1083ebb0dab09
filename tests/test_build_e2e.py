"""End to end through the real CLI on a tiny config: the bundle is complete, its hashes match the
manifest, model.tflite is fully integer, and an app feeding it exactly as the manifest says gets
the accuracy the manifest reports. Bad input fails with a message, a code, and no bundle."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_timeouts import CLI_TIMEOUT_S

TINY = ["--epochs", "2", "--teacher-epochs", "2", "--qat-epochs", "1", "--bench-runs", "5", "--no-scratch"]
BUNDLE_FILES = {"model.tflite", "model_fp32.tflite", "model.onnx", "model_int8.onnx", "labels.txt",
                "manifest.json", "report.md", "report.html", "config.json", "verification_sample.npz"}


def run_cli(args: list[str], env: dict, cwd: Path, timeout: int = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgedistill.cli", *args], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    env = {**os.environ, "EDGEDISTILL_CACHE": str(root / "cache"),
           "EDGEDISTILL_LATENCY_STORE": str(root / "cache" / "latency.jsonl")}
    return root, env


@pytest.fixture(scope="module")
def built(workspace):
    root, env = workspace
    proc = run_cli(["build", "--target", "android-arm64", "--out", "out", "--run-dir", "run", *TINY], env, root)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return root, env, root / "out" / "android-arm64", proc


@pytest.mark.slow
def test_bundle_has_every_file_and_hashes_match_the_manifest(built):
    _, _, bundle, _ = built
    manifest = json.loads((bundle / "manifest.json").read_text())
    present = {p.name for p in bundle.iterdir()}
    assert BUNDLE_FILES <= present
    assert set(manifest["files"]) == present - {"manifest.json"}
    for name, entry in manifest["files"].items():
        data = (bundle / name).read_bytes()
        assert entry["bytes"] == len(data), name
        assert entry["sha256"] == hashlib.sha256(data).hexdigest(), name
    assert not list(bundle.parent.glob(".*partial")), "a staging folder was left behind"


@pytest.mark.slow
def test_model_tflite_is_fully_integer(built):
    from ai_edge_litert.interpreter import Interpreter

    _, _, bundle, _ = built
    interp = Interpreter(str(bundle / "model.tflite"))
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8
    kinds = {np.dtype(d["dtype"]).name for d in interp.get_tensor_details()}
    assert kinds <= {"int8", "int32"}, kinds


def _feed_as_manifest_says(manifest: dict, raw_nhwc: np.ndarray) -> np.ndarray:
    """What an app does, written from the manifest's documented contract alone."""
    spec = manifest["input"]
    pre = spec["preprocessing"]
    x = (raw_nhwc.astype(np.float32) * pre["pixel_scale"] - np.float32(pre["mean"])) / np.float32(pre["std"])
    assert spec["layout"] == "NHWC"
    q = spec["quantization"]
    return np.clip(np.round(x / q["scale"] + q["zero_point"]), -128, 127).astype(np.int8)


@pytest.mark.slow
def test_int8_accuracy_when_fed_exactly_as_the_manifest_describes(built):
    from ai_edge_litert.interpreter import Interpreter

    from edgedistill.data.digits import load_digits_dataset

    _, _, bundle, _ = built
    manifest = json.loads((bundle / "manifest.json").read_text())
    data = load_digits_dataset(seed=manifest["seed"])  # the same split the build used
    x = _feed_as_manifest_says(manifest, data.test.images)
    interp = Interpreter(str(bundle / "model.tflite"))
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert list(inp["shape"][1:]) == manifest["input"]["shape"][1:]
    interp.resize_tensor_input(inp["index"], list(x.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    q = manifest["output"]["quantization"]
    logits = (interp.get_tensor(out["index"]).astype(np.float32) - q["zero_point"]) * q["scale"]
    acc = float((logits.argmax(1) == data.test.labels).mean())
    assert acc == pytest.approx(manifest["artifacts"]["model.tflite"]["accuracy"], abs=1e-9)
    assert acc > 0.5  # two epochs already learn digits far above chance (0.1)
    assert manifest["labels"] == (bundle / "labels.txt").read_text().split()


@pytest.mark.slow
def test_manifest_records_metrics_versions_and_host_latency(built):
    _, _, bundle, _ = built
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["target"]["name"] == "android-arm64"
    assert m["teacher"]["params"] >= 100_000
    assert m["teacher"]["params"] >= 10 * m["student"]["params"]
    for name in ("model.tflite", "model_fp32.tflite", "model.onnx", "model_int8.onnx"):
        a = m["artifacts"][name]
        assert 0 <= a["accuracy"] <= 1 and 0 <= a["agreement"] <= 1
        assert a["latency"]["median_ms"] > 0 and a["latency"]["p90_ms"] >= a["latency"]["median_ms"]
        assert a["latency"]["measured_on"] == "host"
    assert m["artifacts"]["model.tflite"]["agreement"] >= 0.99
    # no --distill, no --augment: the recipe's loss and views (edgedistill/distill/recipe.py)
    from edgedistill.distill.recipe import DEFAULT_LOSS, DEFAULT_OVERRIDES

    assert m["student"]["loss"] == DEFAULT_LOSS.to_str() and m["student"]["augment"] is DEFAULT_OVERRIDES["augment"]
    for lib in ("edgedistill", "torch", "litert-torch", "onnx", "onnxruntime"):
        assert m["versions"][lib]


@pytest.mark.slow
def test_piped_progress_is_plain_lines_per_epoch(built):
    _, _, _, proc = built
    assert "teacher epoch 1/2" in proc.stderr and "distill epoch 2/2" in proc.stderr
    assert "elapsed" in proc.stderr


@pytest.mark.slow
def test_host_benchmark_threads_never_exceed_this_hosts_cores(built):
    from edgedistill.bench.threads import host_cores

    _, _, bundle, proc = built
    m = json.loads((bundle / "manifest.json").read_text())
    threads = {a["latency"]["threads"] for a in m["artifacts"].values()}
    assert max(threads) <= min(host_cores(), m["target"]["threads"]), threads
    if host_cores() < m["target"]["threads"]:
        assert "capped from the target's" in proc.stderr


@pytest.mark.slow
def test_rerun_resumes_instead_of_redoing_finished_stages(built):
    root, env, bundle, _ = built
    proc = run_cli(["build", "--target", "android-arm64", "--out", "out", "--run-dir", "run", *TINY], env, root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reused cached teacher" in proc.stderr
    assert "distill: reused" in proc.stderr


def test_usage_errors_exit_2_without_a_traceback(workspace):
    root, env = workspace
    for args in (["no-such-command"], ["build", "--epochs", "0"]):
        proc = run_cli(args, env, root)
        assert proc.returncode == 2, args
        assert "Traceback" not in proc.stderr


def test_unknown_target_lists_valid_ones(workspace):
    root, env = workspace
    proc = run_cli(["build", "--target", "android-arm65", "--out", "bad"], env, root)
    assert proc.returncode == 2
    assert "android-arm64" in proc.stderr and "Traceback" not in proc.stderr
    assert not (root / "bad").exists()


def test_unwritable_out_fails_before_training(workspace):
    root, env = workspace
    blocker = root / "a-file"
    blocker.write_text("not a directory")
    proc = run_cli(["build", "--out", str(blocker / "dist"), *TINY], env, root)
    assert proc.returncode == 2
    assert "a-file" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_corrupted_teacher_cache_names_the_entry_and_the_fix(built):
    root, env, _, _ = built
    entries = list((Path(env["EDGEDISTILL_CACHE"]) / "teachers").glob("[0-9a-f]*"))
    assert len(entries) == 1
    weights = entries[0] / "model.safetensors"
    good = weights.read_bytes()
    try:
        weights.write_bytes(good[: len(good) // 2])
        proc = run_cli(["build", "--out", "out2", "--run-dir", "run2", *TINY], env, root)
        assert proc.returncode == 2
        assert str(entries[0]) in proc.stderr and "rm -r" in proc.stderr
        assert not (root / "out2" / "android-arm64").exists()
    finally:
        weights.write_bytes(good)


@pytest.mark.slow
def test_verify_cli_exits_0_on_the_bundle_and_3_naming_a_flipped_byte(built, tmp_path):
    import shutil

    root, env, bundle, _ = built
    ok = run_cli(["verify", str(bundle)], env, root)
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    tampered = tmp_path / "tampered"
    shutil.copytree(bundle, tampered)
    model = tampered / "model.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    bad = run_cli(["verify", str(tampered), "--json"], env, root)
    assert bad.returncode == 3
    report = json.loads(bad.stdout)
    assert any("model.tflite" in p for p in report["problems"])
