"""Bring-your-own teacher and data through the real `edgedistill build`: bad input is refused
before any training, with the file named, a non-zero exit, and nothing in the bundle; good input
builds a bundle whose manifest records the user's data and teacher."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_timeouts import CLI_TIMEOUT_S
from PIL import Image
from safetensors.torch import save_file

TINY = ["--epochs", "2", "--qat-epochs", "1", "--bench-runs", "5", "--no-scratch"]

FACTORY = textwrap.dedent(
    """
    from torch import nn

    class Net(nn.Module):
        def __init__(self, classes=3):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(64, 128, 3, padding=1), nn.ReLU())
            self.head = nn.Linear(128, classes)

        def forward(self, x):
            return self.head(self.body(x).mean(dim=(2, 3)))

    def build():
        return Net()

    def build_ten():
        return Net(classes=10)
    """
)


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _npz(path: Path, classes: int = 3, n: int = 120) -> Path:
    """Three learnable classes of 8x8 images: a bright row, column or diagonal."""
    rng = np.random.default_rng(0)

    def make(count):
        x = rng.integers(0, 40, size=(count, 8, 8)).astype(np.uint8)
        y = np.arange(count) % classes
        for i, c in enumerate(y):
            if c == 0:
                x[i, 3, :] = 250
            elif c == 1:
                x[i, :, 3] = 250
            else:
                x[i][np.eye(8, dtype=bool)] = 250
        return x, y

    x_train, y_train = make(n)
    x_test, y_test = make(n // 2)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


CORRUPT = ("train/0/corrupt.png", "train/2/truncated.png")


def _tree(root: Path, npz: Path) -> Path:
    """The .npz's images as an ImageFolder (train/, test/), with 6 training images at 12x10 among the
    8x8 ones and two unreadable PNGs (``CORRUPT``)."""
    arrays = np.load(npz)
    for split in ("train", "test"):
        for i, (image, label) in enumerate(zip(arrays[f"x_{split}"], arrays[f"y_{split}"])):
            path = root / split / str(label) / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            pil = Image.fromarray(image)
            (pil.resize((10, 12)) if split == "train" and i < 6 else pil).save(path)
    (root / CORRUPT[0]).write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    whole = (root / "train" / "2" / "2.png").read_bytes()
    (root / CORRUPT[1]).write_bytes(whole[: len(whole) // 2])
    return root


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("byo")
    (root / "teacher_def.py").write_text(FACTORY)
    sys.path.insert(0, str(root))
    import teacher_def

    sys.path.remove(str(root))
    torch.manual_seed(0)
    save_file(teacher_def.build().state_dict(), str(root / "teacher.safetensors"))
    _npz(root / "data.npz")
    _tree(root / "tree", root / "data.npz")
    env = {**os.environ, "EDGEDISTILL_CACHE": str(root / "cache"),
           "EDGEDISTILL_LATENCY_STORE": str(root / "cache" / "lat.jsonl")}
    return root, env


def build(ws, *args: str) -> subprocess.CompletedProcess:
    root, env = ws
    return subprocess.run([sys.executable, "-m", "edgedistill.cli", "build", "--out", "out", "--run-dir", "run",
                           *TINY, *args], cwd=root, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def assert_refused(proc, *needles: str, root: Path) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr[-2000:])
    assert not (root / "out" / "android-arm64").exists()


def test_missing_data_path_is_named(ws):
    proc = build(ws, "--data", "nowhere/train")
    assert_refused(proc, "nowhere", root=ws[0])


def test_a_pickled_payload_as_weights_is_refused_and_nothing_runs(ws):
    root, _ = ws
    marker = root / "pwned"
    with open(root / "evil.pt", "wb") as f:
        pickle.dump({"w": Payload(marker)}, f)
    proc = build(ws, "--data", "data.npz", "--teacher", "teacher_def.py:build", "--weights", "evil.pt")
    assert_refused(proc, "evil.pt", root=root)
    assert not marker.exists()


def test_a_teacher_with_the_wrong_class_count_is_refused_before_training(ws):
    root, _ = ws
    torch.manual_seed(0)
    proc = build(ws, "--data", "tree", "--teacher", "teacher_def.py:build_ten")
    assert_refused(proc, "10", "3", root=root)
    # the data stage said what loading did to the data (the CLI filters Python warnings)
    assert f"2 unreadable images skipped: {CORRUPT[0]}, {CORRUPT[1]}" in proc.stderr, proc.stderr[-2000:]
    assert "6 images resized to 8x8" in proc.stderr and "6 from 12x10" in proc.stderr, proc.stderr[-2000:]


def test_a_config_file_with_an_unknown_key_is_named(ws):
    root, _ = ws
    (root / "bad.toml").write_text("[build]\nepoch = 3\n")
    proc = build(ws, "--config", "bad.toml")
    assert_refused(proc, "bad.toml", "epoch", root=root)


@pytest.mark.slow
def test_user_teacher_and_npz_build_a_bundle_that_records_them(ws):
    root, _ = ws
    (root / "edgedistill.toml").write_text('[build]\ndata = "data.npz"\nseed = 3\n')
    try:
        proc = build(ws, "--teacher", "teacher_def.py:build", "--weights", "teacher.safetensors")
    finally:
        (root / "edgedistill.toml").unlink()
    assert proc.returncode == 0, proc.stderr[-3000:]
    bundle = root / "out" / "android-arm64"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["labels"] == ["0", "1", "2"]
    assert manifest["data"]["source"]["kind"] == "npz"
    assert manifest["teacher"]["source"]["kind"] == "factory"
    assert manifest["seed"] == 3  # from edgedistill.toml
    assert manifest["input"]["preprocessing"]["pixel_scale"] == pytest.approx(1 / 255)
    assert manifest["quantization"]["calibration"]["count"] > 0
    # a teacher outside the zoo gets inverted-residual students, and the bundle says so
    assert manifest["student"]["spec"]["family"] == "mobilenet"
    assert "outside the zoo" in manifest["selection"]["note"]
    assert "outside the zoo" in (bundle / "report.md").read_text()
    config = json.loads((bundle / "config.json").read_text())
    assert config["data"] == "data.npz" and config["teacher"] == "teacher_def.py:build"
