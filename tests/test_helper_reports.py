"""The device helper says what really ran: whether the delegate was applied, the runtime and its
version, the CPU's features; XNNPACK asked for and not applied is an error, not a silent fallback
to the builtin kernels (seen on a board whose chroot lacked /sys)."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgedistill.bench import device_bench
from edgedistill.bench.device_bench import BenchError

sys.path.insert(0, str(Path(__file__).parent))
from bench_support.models import tiny_models  # noqa: E402


def test_the_helper_says_whether_xnnpack_was_applied():
    model = str(tiny_models().tflite_dynamic)
    on = device_bench.benchmark(model, runs=2, warmup=0, delegate="xnnpack")
    off = device_bench.benchmark(model, runs=2, warmup=0, delegate="none")
    assert on["delegate_applied"] is True and off["delegate_applied"] is False
    assert on["runtime"] == "ai_edge_litert" and on["runtime_version"]
    assert "cpu_features" in device_bench.device_info()


def test_xnnpack_asked_for_and_not_applied_is_an_error(tmp_path):
    import litert_torch

    class CumSum(torch.nn.Module):  # CUMSUM: an op XNNPACK does not take, so nothing is delegated
        def forward(self, x):
            return torch.cumsum(x, dim=1)

    path = tmp_path / "cumsum.tflite"
    litert_torch.convert(CumSum().eval(), (torch.randn(1, 8),)).export(str(path))
    with pytest.raises(BenchError, match="XNNPACK was asked for but ai_edge_litert [0-9.]+ did not apply it"):
        device_bench.benchmark(str(path), runs=1, warmup=0, delegate="xnnpack")
    assert device_bench.benchmark(str(path), runs=1, warmup=0, delegate="none")["delegate_applied"] is False


def test_predict_mode_returns_the_outputs_of_each_row(tmp_path):
    model = tiny_models().tflite_dynamic
    from edgedistill.backends import load_model

    spec = load_model(model).input_spec
    x = np.random.default_rng(0).standard_normal((3, *spec.shape[1:])).astype(np.float32)
    np.save(tmp_path / "in.npy", x)
    proc = subprocess.run([sys.executable, device_bench.__file__, str(model), "--predict", str(tmp_path / "in.npy")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    result = json.loads(proc.stdout.strip().splitlines()[-1])
    y = np.load(io.BytesIO(base64.b64decode(result["outputs_npy_b64"])))
    assert y.shape[0] == 3 and result["delegate_applied"] is True
    np.testing.assert_allclose(y, load_model(model).run(x), rtol=1e-5, atol=1e-5)  # the host's own run
