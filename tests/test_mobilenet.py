"""The inverted-residual family: shape, taps, distillation, and the build's int8 path end to end."""

import numpy as np
import pytest
import torch

from edgedistill.data.digits import load_digits_dataset
from edgedistill.models import create_model, spec_from_dict, spec_to_dict
from edgedistill.models.mobilenet import MobileNetSpec
from edgedistill.models.taps import FeatureTaps


@pytest.fixture(scope="module")
def digits():
    return load_digits_dataset()


def test_blocks_are_expand_depthwise_project_with_shortcuts_only_where_shapes_match():
    model = create_model(MobileNetSpec(1, 10, (8, 16, 32), (2, 1, 1), 4)).eval()
    first, second = model.stages[0][0], model.stages[0][1]
    assert first.dw[0].groups == 32 and first.dw[0].weight.shape == (32, 1, 3, 3)
    assert first.residual and second.residual  # stride 1, 8 -> 8
    assert not model.stages[1][0].residual  # 8 -> 16 at stride 2
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    no_expand = create_model(MobileNetSpec(1, 10, (8, 16), (1, 1), 1))
    assert isinstance(no_expand.stages[0][0].expand, torch.nn.Identity)


def test_feature_info_names_real_modules_and_spec_round_trips():
    spec = MobileNetSpec(1, 10, (8, 16, 32), (1, 2, 1), 6)
    model = create_model(spec)
    x = torch.randn(2, 1, 8, 8)
    paths = [f.module for f in model.feature_info]
    with FeatureTaps(model, paths) as taps:
        model(x)
    for info in model.feature_info:
        assert taps.outputs[info.module].shape == (2, info.channels, 8 // info.reduction, 8 // info.reduction)
    assert spec_from_dict(spec_to_dict(spec)) == spec
    assert spec.describe() == "mobilenet w8-16-32 d1-2-1 e6"
    with pytest.raises(ValueError):
        MobileNetSpec(1, 10, (8, 16), (1,))


def test_every_distillation_loss_trains_a_mobilenet_student(digits):
    from edgedistill.distill.losses import LossWeights
    from edgedistill.distill.trainer import TrainConfig, train

    torch.manual_seed(0)
    teacher = create_model(MobileNetSpec(1, 10, (16, 32, 64), (1, 1, 1), 4))
    student = create_model(MobileNetSpec(1, 10, (8, 16, 32), (1, 1, 1), 2))
    weights = LossWeights(ce=0.5, kd=0.5, hint=1.0, attention=1.0, rkd=1.0, dist=1.0)
    result = train(student, digits, TrainConfig(epochs=1), teacher=teacher, weights=weights)
    assert set(result.history[0].parts) >= {"kd", "hint", "attention", "rkd", "dist"}
    assert all(np.isfinite(v) for v in result.history[0].parts.values())


@pytest.mark.slow
def test_qat_int8_tflite_of_a_mobilenet_is_fully_integer_and_agrees(digits, tmp_path):
    """Depthwise convs go through PT2E QAT and litert-torch into a fully integer .tflite that the
    build's own verification accepts, and fp32 TFLite/ONNX match the torch student."""
    from edgedistill.distill.trainer import TrainConfig, train
    from edgedistill.backends.onnx.convert import export_onnx_fp32
    from edgedistill.backends.tflite.convert import export_tflite_fp32, export_tflite_int8
    from edgedistill.quantize.qat import QATConfig, qat_finetune
    from edgedistill.verify.checks import verify_file

    torch.manual_seed(0)
    student = create_model(MobileNetSpec(1, 10, (8, 16, 32), (1, 1, 1), 4))
    train(student, digits, TrainConfig(epochs=10))
    x = torch.from_numpy(digits.batch("train", slice(None)))
    converted, quantizer, result = qat_finetune(student, digits, None, QATConfig(epochs=1))
    export_tflite_int8(converted, quantizer, x[:4], tmp_path / "int8.tflite")
    export_tflite_fp32(student, x[:4], tmp_path / "fp32.tflite")
    export_onnx_fp32(student, x[:4], tmp_path / "fp32.onnx")
    test_x = torch.from_numpy(digits.batch("test", slice(None)))
    with torch.no_grad():
        ref_int8 = converted(test_x).numpy()
        ref_fp32 = student.eval()(test_x).numpy()
    int8 = verify_file(tmp_path / "int8.tflite", "int8", digits, ref_int8, "qat", 0.98)
    assert int8.passed, int8.problems
    assert int8.input["dtype"] == "int8" and int8.builtin_kernels_accuracy is not None
    assert int8.accuracy > 0.8 and abs(int8.accuracy - result.test_acc) <= 0.02
    for name in ("fp32.tflite", "fp32.onnx"):
        report = verify_file(tmp_path / name, "fp32", digits, ref_fp32, "fp32", 0.995)
        assert report.passed and report.max_abs_logit_diff < 1e-3, (name, report.problems)
