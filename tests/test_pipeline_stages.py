"""Each stage's contract on tiny settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgedistill.data.digits import load_digits_dataset
from edgedistill.data.split import stratified_split
from edgedistill.errors import InputError
from edgedistill.hardware.targets import available_targets, load_target
from edgedistill.models import count_parameters, create_model
from edgedistill.models.resnet import ResNetSpec
from edgedistill.rundir import RunDir
from edgedistill.select.candidates import evaluate_candidates


@pytest.fixture(scope="module")
def digits():
    return load_digits_dataset(seed=0)


def test_digits_split_is_fixed_stratified_and_disjoint(digits):
    again = load_digits_dataset(seed=0)
    assert digits.fingerprint() == again.fingerprint()
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    for split in (digits.train, digits.val, digits.test):
        counts = np.bincount(split.labels, minlength=10)
        assert counts.min() > 0 and counts.max() / counts.min() < 1.3  # every class, in proportion
    tr, va, te = stratified_split(np.repeat(np.arange(10), 50), 0.2, 0.2, seed=1)
    assert not (set(tr) & set(va)) and not (set(tr) & set(te)) and not (set(va) & set(te))


def test_preprocessing_maps_raw_pixels_to_normalised_nchw(digits):
    x = digits.batch("train", slice(None))
    assert x.shape == (len(digits.train), 1, 8, 8) and x.dtype == np.float32
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
    pre = digits.preprocessing
    raw = digits.train.images[:1]
    expected = (raw[0, :, :, 0] * pre.pixel_scale - pre.mean[0]) / pre.std[0]
    np.testing.assert_allclose(pre.apply(raw)[0, 0], expected, atol=1e-5)


def test_every_shipped_target_loads_and_unknown_names_list_the_valid_ones(tmp_path):
    assert {"android-arm64", "rpi4", "rpi5", "host"} <= set(available_targets())
    for name in available_targets():
        t = load_target(name)
        assert t.threads >= 1 and t.budgets.latency_ms > 0 and t.budgets.model_size_kb > 0
    with pytest.raises(InputError, match="valid targets: android-arm64"):
        load_target("nope")
    broken = tmp_path / "broken.toml"
    broken.write_text("[runtime]\nname='litert'\n")
    with pytest.raises(InputError, match="broken.toml"):
        load_target(str(broken))


def test_budget_override_changes_only_that_budget():
    t = load_target("android-arm64")
    o = t.with_budgets(None, 10.0)
    assert o.budgets.model_size_kb == 10.0 and o.budgets.latency_ms == t.budgets.latency_ms


def test_candidates_keep_the_teacher_family_and_respect_compression_and_size():
    teacher = ResNetSpec(1, 10, (32, 64, 128), (2, 2, 2))
    tparams = count_parameters(create_model(teacher))
    target = load_target("android-arm64")
    cands = evaluate_candidates(teacher, (1, 8, 8), target, tparams, 10.0)
    assert all(c.spec.family == "resnet" and len(c.spec.widths) == 3 for c in cands)
    fitting = [c for c in cands if c.fits]
    assert fitting, "some student must fit the android budget"
    for c in fitting:
        assert c.params * 10 <= tparams and c.predicted_size_kb <= target.budgets.model_size_kb
    for c in cands:
        if not c.fits:
            assert c.why_not


def test_rundir_skips_finished_stages_and_resumes_interrupted_ones(tmp_path):
    rd = RunDir(tmp_path)
    stage = rd.stage("distill", {"epochs": 2})
    assert stage.load() is None
    assert stage.begin() is False
    (stage.dir / "checkpoint.pt").write_text("partial")
    again = rd.stage("distill", {"epochs": 2})
    assert again.begin() is True  # an interrupted attempt with the same inputs resumes
    assert (again.dir / "checkpoint.pt").exists()
    again.save({"acc": 0.9})
    assert rd.stage("distill", {"epochs": 2}).load() == {"acc": 0.9}
    changed = rd.stage("distill", {"epochs": 3})
    assert changed.load() is None
    changed.begin()
    assert not (changed.dir / "checkpoint.pt").exists()  # different inputs start clean


@pytest.fixture(scope="module")
def qat_artifacts(digits, tmp_path_factory):
    """A tiny student through QAT and every export, once for the tests below."""
    from edgedistill.distill.trainer import TrainConfig, train
    from edgedistill.backends.onnx.convert import export_onnx_fp32, export_onnx_int8
    from edgedistill.backends.tflite.convert import export_tflite_fp32, export_tflite_int8
    from edgedistill.quantize.qat import QATConfig, qat_finetune

    out = tmp_path_factory.mktemp("artifacts")
    torch.manual_seed(0)
    student = create_model(ResNetSpec(1, 10, (4, 8, 16), (1, 1, 1)))
    train(student, digits, TrainConfig(epochs=10))  # decisive logits: near-ties flip between kernels
    x = torch.from_numpy(digits.batch("train", slice(None)))
    converted, quantizer, result = qat_finetune(student, digits, None, QATConfig(epochs=1))
    export_tflite_int8(converted, quantizer, x[:4], out / "int8.tflite")
    export_tflite_fp32(student, x[:4], out / "fp32.tflite")
    export_onnx_fp32(student, x[:4], out / "fp32.onnx")
    export_onnx_int8(converted, x[:4], out / "int8.onnx")
    with torch.no_grad():
        ref_int8 = converted(torch.from_numpy(digits.batch("test", slice(None)))).numpy()
        ref_fp32 = student.eval()(torch.from_numpy(digits.batch("test", slice(None)))).numpy()
    return out, ref_int8, ref_fp32, result, (converted, x[:4])


@pytest.mark.slow
def test_qat_int8_tflite_is_fully_integer_and_agrees_with_its_torch_reference(digits, qat_artifacts):
    from edgedistill.verify.checks import verify_file

    out, ref_int8, _, result, _ = qat_artifacts
    report = verify_file(out / "int8.tflite", "int8", digits, ref_int8, "qat", 0.99)
    assert report.passed, report.problems
    assert report.input["dtype"] == "int8" and report.input["layout"] == "NHWC"
    assert report.builtin_kernels_accuracy is not None  # ran without XNNPACK
    assert abs(report.accuracy - result.test_acc) <= 0.01


@pytest.mark.slow
def test_verification_rejects_a_float_model_posing_as_int8(digits, qat_artifacts):
    from edgedistill.verify.checks import require_all_passed, verify_file
    from edgedistill.errors import VerificationError

    out, _, ref_fp32, _, _ = qat_artifacts
    report = verify_file(out / "fp32.tflite", "int8", digits, ref_fp32, "fp32", 0.99)
    assert not report.passed
    assert any("not int8" in p or "not fully integer" in p for p in report.problems)
    with pytest.raises(VerificationError, match="fp32.tflite"):
        require_all_passed([report])


@pytest.mark.slow
def test_verification_rejects_disagreeing_logits(digits, qat_artifacts):
    from edgedistill.verify.checks import verify_file

    out, _, ref_fp32, _, _ = qat_artifacts
    shuffled = np.roll(ref_fp32, 1, axis=1)  # a reference whose top-1 never matches
    report = verify_file(out / "fp32.onnx", "fp32", digits, shuffled, "fp32", 0.99)
    assert not report.passed and "agreement" in report.problems[0]


@pytest.mark.slow
def test_onnx_exports_agree_with_torch(digits, qat_artifacts):
    from edgedistill.verify.checks import verify_file

    out, ref_int8, ref_fp32, _, _ = qat_artifacts
    fp32 = verify_file(out / "fp32.onnx", "fp32", digits, ref_fp32, "fp32", 0.995)
    assert fp32.passed and fp32.max_abs_logit_diff < 1e-3
    # the int8 ONNX is the torch int8 graph model.tflite is lowered from, held to the same 99%
    int8 = verify_file(out / "int8.onnx", "int8", digits, ref_int8, "qat", 0.99)
    assert int8.passed, int8.problems
    assert int8.tensor_dtypes["QuantizeLinear+DequantizeLinear nodes"] > 0
    tflite = verify_file(out / "int8.tflite", "int8", digits, ref_int8, "qat", 0.99)
    assert (int8.predictions == tflite.predictions).mean() >= 0.99  # one int8 model in two formats


@pytest.mark.slow
def test_int8_onnx_stores_integer_weights_in_uint8(qat_artifacts):
    """The weights are integer initializers (not float ones quantized on every run), all QDQ
    tensors uint8 (qdq.unsigned: onnxruntime's x86 kernels without VNNI saturate int8 x int8)."""
    import onnx
    from onnx import numpy_helper

    out = qat_artifacts[0]
    model = onnx.load(str(out / "int8.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    producer = {o: n for n in model.graph.node for o in n.output}
    for conv in convs:
        dq = producer[conv.input[1]]
        assert dq.op_type == "DequantizeLinear" and inits[dq.input[0]].dtype == np.uint8, conv.name
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in inits for n in model.graph.node)


@pytest.mark.slow
def test_moving_int8_to_uint8_keeps_every_value(digits, qat_artifacts):
    """qdq.unsigned adds 128 to every zero point and integer weight: run unfused (no kernel
    rewrites), the model's outputs do not change by a single bit."""
    import onnx
    import onnxruntime as ort

    from edgedistill.backends.onnx import qdq
    from edgedistill.backends.onnx.convert import _exported

    out, ref_int8, _, _, (converted, sample) = qat_artifacts
    model = _exported(converted, sample)  # as export_onnx_int8 starts
    assert qdq.integer_weights(model) > 0
    onnx.save(model, str(out / "signed.onnx"))
    assert qdq.unsigned(model) > 0
    onnx.save(model, str(out / "unsigned.onnx"))
    x = digits.batch("test", slice(0, 64))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    runs = [ort.InferenceSession(str(out / f), opts, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
            for f in ("signed.onnx", "unsigned.onnx")]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert np.abs(runs[0] - ref_int8[:64]).max() < 0.05 * np.abs(ref_int8[:64]).max()  # and it is the torch graph


def test_litert_pattern_workaround_still_needed():
    """Fails once litert-torch/torchao accept plain pattern functions again: then delete
    edgedistill/quantize/litert_patch.py."""
    import importlib

    import litert_torch.quantize.pt2e_quantizer_utils as utils
    from torchao.quantization.pt2e.utils import _get_aten_graph_module_for_pattern

    def pattern(x):
        return x + 1

    with pytest.raises(ValueError, match="Expected .mod. to be an instance of .torch.nn.Module."):
        _get_aten_graph_module_for_pattern(pattern, (torch.randn(2),))
    # ...and the patched entry point litert-torch calls accepts it.
    importlib.import_module("edgedistill.quantize.litert_patch").install()
    assert isinstance(utils._get_aten_graph_module_for_pattern(pattern, (torch.randn(2),)), torch.nn.Module)


@pytest.mark.slow
def test_qat_leaves_the_float_student_untouched(digits):
    """torch.export shares parameters with the traced module: QAT must train a copy, or the fp32
    artifacts would silently carry QAT weights."""
    from edgedistill.quantize.qat import QATConfig, qat_finetune

    student = create_model(ResNetSpec(1, 10, (4, 8, 16), (1, 1, 1)))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    qat_finetune(student, digits, None, QATConfig(epochs=1))
    for key, value in student.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_model_inputs_have_canonical_strides_even_for_one_channel(digits):
    """A transposed one-channel view counts as contiguous to numpy but keeps an odd stride on the
    channel axis, which crashed torch's CPU convolution backward (heap corruption, 28x28 data)."""
    x = digits.batch("train", slice(None))
    n, c, h, w = x.shape
    assert x.flags["OWNDATA"]
    assert x.strides == (c * h * w * 4, h * w * 4, w * 4, 4)


def test_augmented_batches_have_canonical_strides():
    """torch's .contiguous() keeps the odd stride of a permuted one-channel batch; the trainer's
    shifted views must not (the same conv-backward crash as above)."""
    from edgedistill.distill.batches import canonical, shift_views

    x = torch.randn(8, 1, 28, 28)
    views = torch.arange(8) % 9
    assert shift_views(x, views).stride() == (784, 784, 28, 1)
    odd = torch.randn(8, 28, 28, 1).permute(0, 3, 1, 2)
    assert odd.contiguous().stride() != (784, 784, 28, 1)  # why canonical() exists
    assert canonical(odd).stride() == (784, 784, 28, 1) and torch.equal(canonical(odd), odd)
