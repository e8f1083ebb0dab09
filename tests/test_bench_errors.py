"""``edgedistill bench`` on a file that is not a model is bad input: exit 2, one message naming the
file and what is wrong, no traceback. Error text is not wrapped when stderr is piped, and LiteRT's
native ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` line stays off stderr."""

from __future__ import annotations

import subprocess
import sys

import pytest
from bench_support.models import tiny_models

from edgedistill.errors import EXIT_INPUT, InputError

XNNPACK_LINE = "XNNPACK delegate"


def _edgedistill(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgedistill.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def _onnx_with_an_unknown_op(path) -> None:
    """A well-formed ONNX file that onnxruntime refuses to load (no such operator)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("NoSuchOperator", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


BAD_MODELS = {
    "text.tflite": lambda p: p.write_text("this is a text file, not a model\n"),
    "flatbuffer_id_only.tflite": lambda p: p.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00garbage" * 8),
    "corrupt.onnx": lambda p: p.write_bytes(b"\x08\x07\x12\xff\xff\xff\xff\x0fnot protobuf"),
    "text.onnx": lambda p: p.write_text("hello\n"),
    "empty.tflite": lambda p: p.write_bytes(b""),
    "unknown_op.onnx": _onnx_with_an_unknown_op,
    "notes.txt": lambda p: p.write_text("not a model\n"),
}


@pytest.mark.parametrize("name", sorted(BAD_MODELS))
def test_a_file_that_is_not_a_model_is_an_input_error(tmp_path, name):
    path = tmp_path / name
    BAD_MODELS[name](path)
    done = _edgedistill("bench", str(path), "--device", "local", "--runs", "3", "--no-store")
    assert done.returncode == EXIT_INPUT, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    first = done.stderr.splitlines()[0]
    assert first.startswith("error: ") and name in first, done.stderr
    # The old, wrong advice: xnnpack is the default already and verify takes a bundle.
    assert "--delegate (e.g. xnnpack)" not in done.stderr and "edgedistill verify" not in done.stderr


def test_the_local_runner_calls_a_model_it_cannot_load_bad_input(tmp_path):
    from edgedistill.bench import bench_model

    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00garbage" * 8)
    with pytest.raises(InputError, match="broken.tflite.*cannot load"):
        bench_model(broken, runs=1)
    unknown = tmp_path / "unknown_op.onnx"
    _onnx_with_an_unknown_op(unknown)
    with pytest.raises(InputError, match="unknown_op.onnx.*onnxruntime cannot load"):
        bench_model(unknown, runs=1)


def test_a_long_error_stays_on_one_line_when_stderr_is_piped(tmp_path):
    deep = tmp_path / ("a-rather-long-folder-name-" * 3) / "and-another-one"
    deep.mkdir(parents=True)
    model = deep / "not-really-a-model.tflite"
    model.write_text("text\n")
    done = _edgedistill("bench", str(model), "--no-store")
    assert done.returncode == EXIT_INPUT
    first = done.stderr.splitlines()[0]
    assert len(first) > 120 and str(model) in first, done.stderr  # path and reason on the one line
    assert "not a TFLite model" in first


@pytest.fixture(scope="module")
def models():
    return tiny_models()


@pytest.mark.parametrize("attr", ["tflite_dynamic", "onnx_dynamic"])
def test_bench_keeps_the_native_delegate_line_off_stderr(models, attr):
    done = _edgedistill("bench", str(getattr(models, attr)), "--device", "local", "--runs", "3", "--warmup", "1",
                        "--no-store")
    assert done.returncode == 0, done.stderr
    assert XNNPACK_LINE not in done.stderr and XNNPACK_LINE not in done.stdout


def test_verify_runtime_keeps_the_native_delegate_line_off_stderr(models):
    code = ("import sys; from edgedistill.backends.tflite.runtime import TFLiteModel; "
            f"m = TFLiteModel({str(models.tflite_dynamic)!r}); print('loaded', file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert XNNPACK_LINE not in done.stderr and "loaded" in done.stderr


def test_edgedistill_debug_keeps_the_native_line(models):
    import os

    code = f"from edgedistill.backends.tflite.runtime import TFLiteModel; TFLiteModel({str(models.tflite_dynamic)!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EDGEDISTILL_DEBUG": "1"})
    assert done.returncode == 0, done.stderr
    assert XNNPACK_LINE in done.stderr
