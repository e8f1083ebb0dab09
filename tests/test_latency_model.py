"""The latency model: kernels are counted fused, coefficients are recovered, files name sources."""

import json
from pathlib import Path

import numpy as np
import pytest

from edgedistill.hardware.cost import FEATURES, model_cost, padded_macs
from edgedistill.hardware.latency_model import LatencyModel, LatencyRecord, load_latency_model
from edgedistill.hardware.targets import available_targets
from edgedistill.models.mobilenet import MobileNetSpec
from edgedistill.models.resnet import ResNetSpec
from edgedistill.models.vit import ViTSpec
from edgedistill.paths import calibration_dir

ROOT = Path(__file__).resolve().parents[1]

SHAPE = (1, 8, 8)


def test_conv_bn_relu_is_one_kernel_and_add_relu_another():
    cost = model_cost(ResNetSpec(1, 10, (8, 16), (1, 1)), SHAPE)
    ops = [tuple(k.torch_ops) for k in cost.kernels]
    assert ("conv2d", "batch_norm", "relu") in ops  # stem and first convs
    assert ("add", "relu") in ops
    assert not any(k.torch_ops[0] in ("batch_norm", "relu") for k in cost.kernels)
    # stem + 2 blocks x 2 convs + 1 projection shortcut + 2 adds + mean + head
    assert len(cost.kernels) == 1 + 4 + 1 + 2 + 1 + 1


def test_vit_attention_matmuls_and_layer_norms_are_counted():
    cost = model_cost(ViTSpec(1, 10, 8, 2, 16, 2, 2), SHAPE)
    assert sum(k.op == "matmul" for k in cost.kernels) == 4  # q @ k^T and probs @ v per block
    assert sum(k.op == "fc" for k in cost.kernels) == 2 * 6 + 1
    f = cost.features("int8")
    assert f["kernels"] > len(cost.kernels)  # layer norms lower to several ops


def test_depthwise_convs_are_their_own_kernels_counted_per_channel_not_as_gemms():
    spec = MobileNetSpec(1, 10, (8, 16), (2, 1), 4)
    cost = model_cost(spec, SHAPE)
    dw = [k for k in cost.kernels if k.op == "dwconv"]
    assert len(dw) == 3 and all(k.torch_ops == ["conv2d", "batch_norm", "relu"] for k in dw)
    # stem, per block expand + dw + project (three blocks), the residual adds of both stage-0 blocks
    # (stride 1, 8 -> 8 channels), mean, head
    assert len(cost.kernels) == 1 + 3 * 3 + 2 + 1 + 1
    f = cost.features("int8")
    # 8x8 positions x 9 taps x 32 channels (two stage-0 blocks) + 4x4 x 9 x 32 (stride-2 block)
    assert f["dw_macs"] == 2 * 64 * 9 * 32 + 16 * 9 * 32
    assert f["conv_macs"] == sum(padded_macs(k.gemm) for k in cost.kernels if k.op == "conv")
    # counted as GEMMs, each tap's single input channel would pad to 8 and overstate the work 8x
    assert sum(padded_macs(k.gemm) for k in dw) == 8 * f["dw_macs"]


def _synthetic_records(true: dict[str, float], precision: str = "int8", noise: float = 0.0):
    rng = np.random.default_rng(0)
    specs = [ResNetSpec(1, 10, (w, 2 * w, 4 * w), d) for w in (4, 8, 16, 24) for d in ((1, 1, 1), (2, 2, 2))]
    specs += [ViTSpec(1, 10, 8, 2, dim, depth, 2) for dim in (16, 32, 64) for depth in (1, 3)]
    specs += [MobileNetSpec(1, 10, (w, 2 * w, 4 * w), d, e) for w in (8, 16) for d in ((1, 1, 1), (2, 2, 2))
              for e in (2, 4)]
    recs = []
    for s in specs:
        f = model_cost(s, SHAPE).features(precision)
        ms = sum(true[k] * f[k] for k in FEATURES) * (1 + noise * rng.standard_normal())
        recs.append(LatencyRecord(f, precision, 1, ms, s.describe()))
    return recs


def test_peak_memory_counts_xnnpack_indirection_tables_for_spatial_convs_only():
    from torch import nn

    from edgedistill.hardware.cost import PEAK_MEMORY_FIT, POINTER_BYTES

    # a 7x7 stride-2 stem at 224 px, then a 1x1 conv (a plain GEMM: no table) and a depthwise 3x3
    model = nn.Sequential(nn.Conv2d(3, 8, 7, 2, 3), nn.Conv2d(8, 16, 1), nn.Conv2d(16, 16, 3, 1, 1, groups=16))
    cost = model_cost(model, (3, 224, 224))
    f = cost.memory_features("int8")
    assert f["indirection"] == (112 * 112 * 49 + 112 * 112 * 9) * POINTER_BYTES
    assert f["weights"] == sum(p.numel() for p in model.parameters())
    assert f["activations"] == 2 * 112 * 112 * 16  # the largest input + output pair: the depthwise conv's
    a, b, d, c = PEAK_MEMORY_FIT["int8"]
    assert cost.peak_memory_bytes("int8") == int(a * f["activations"] + b * f["weights"] + d * f["indirection"] + c)
    assert cost.memory_features("fp32")["weights"] == 4 * f["weights"]
    assert cost.peak_memory_bytes("fp16") > cost.peak_memory_bytes("int8")  # fp16 takes fp32's constants


def test_peak_memory_fit_recovers_known_constants_and_keeps_them_non_negative():
    import importlib.util

    spec = importlib.util.spec_from_file_location("fit_peak_memory", ROOT / "scripts" / "fit_peak_memory.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rng = np.random.default_rng(0)
    rows = [{"activations": float(a), "weights": float(w), "indirection": float(i)}
            for a, w, i in rng.uniform(1e5, 5e6, size=(12, 3))]
    for r in rows:
        r["measured"] = 1.1 * r["activations"] + 2.3 * r["weights"] + 1.2 * r["indirection"] + 10e6
    assert np.allclose(script.fit(rows), (1.1, 2.3, 1.2, 10e6), rtol=1e-6)
    for r in rows:  # a footprint that does not grow with the activations: zero, never negative
        r["measured"] = 2.0 * r["weights"] + 5e6 - 0.5 * r["activations"]
    assert min(script.fit(rows)) >= 0.0


def test_fit_recovers_known_coefficients_from_synthetic_records():
    true = {"fixed": 0.02, "kernels": 0.003, "conv_macs": 2e-8, "dw_macs": 6e-8, "fc_macs": 5e-8, "matmul_macs": 8e-8,
            "bytes": 1e-7, "elems": 4e-7, "attn_elems": 1e-6}
    model = LatencyModel("synthetic", "litert", threads=1).fit(_synthetic_records(true), ridge=0.0)
    got = model.coefficients["int8"]
    for k, v in true.items():
        assert got[k] == pytest.approx(v, rel=0.05), k
    assert model.fit_summary["int8"]["median_abs_pct_err"] < 1.0


def test_fit_with_noise_still_predicts_within_a_few_percent():
    true = {"fixed": 0.02, "kernels": 0.003, "conv_macs": 2e-8, "dw_macs": 6e-8, "fc_macs": 5e-8, "matmul_macs": 0.0,
            "bytes": 0.0, "elems": 4e-7, "attn_elems": 1e-6}
    recs = _synthetic_records(true, noise=0.03)
    model = LatencyModel("synthetic", "litert", threads=1).fit(recs)
    errs = [abs(model.predict_features(r.features, "int8", 1) / r.measured_ms - 1) for r in recs]
    assert np.median(errs) < 0.05
    assert all(v >= 0 for v in model.coefficients["int8"].values())


def test_predictions_grow_with_flops_within_a_family_and_round_trip_json():
    model = load_latency_model("host")
    resnets = [ResNetSpec(1, 10, (w, 2 * w, 4 * w), (2, 2, 2)) for w in (4, 8, 16, 32)]
    preds = [model.predict(s, (1, 28, 28), "int8", 1) for s in resnets]
    assert preds == sorted(preds) and preds[0] < preds[-1]
    vits = [ViTSpec(1, 10, 28, 4, d, 2, 4) for d in (16, 32, 64, 128)]
    preds = [model.predict(s, (1, 28, 28), "int8", 1) for s in vits]
    assert preds == sorted(preds)
    again = LatencyModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert again.predict(resnets[1], (1, 28, 28), "int8", 1) == pytest.approx(model.predict(resnets[1], (1, 28, 28), "int8", 1))


def test_more_threads_never_predict_slower():
    model = load_latency_model("host")
    spec = ResNetSpec(1, 10, (32, 64, 128), (2, 2, 2))
    assert model.predict(spec, (1, 28, 28), "int8", 4) < model.predict(spec, (1, 28, 28), "int8", 1)


@pytest.mark.parametrize("target", available_targets())
def test_every_target_ships_a_calibration_file_whose_figures_name_their_source(target):
    path = calibration_dir() / f"{target}.json"
    doc = json.loads(path.read_text())
    model = load_latency_model(target)
    assert model.target == target
    assert set(model.coefficients) >= {"int8", "fp32"}
    assert model.sources, f"{path} names no source"
    for src in model.sources:
        assert src.get("kind") in ("measured", "derived", "refit", "scale")
        if src["kind"] == "measured":
            assert src.get("command"), f"{path}: a measured figure without the command that made it"
        if src["kind"] == "derived":
            assert src.get("citations") and all(c.get("url") and c.get("numbers") for c in src["citations"])
    if model.sources[0]["kind"] == "measured":
        assert doc.get("records"), f"{path}: measured model without its records"


@pytest.mark.parametrize("target", [t for t in available_targets() if t != "host"])
def test_derived_calibrations_are_up_to_date_with_the_host_one(target):
    """After recalibrating the host, `python scripts/derive_calibration.py` must be rerun: a derived
    target scales the host's coefficients, and a stale file would predict from an old host model."""
    from edgedistill.hardware.calibrate import derive_latency_model
    from edgedistill.hardware.targets import load_target

    model = load_latency_model(target)
    src = next(s for s in model.sources if s["kind"] == "derived")
    again = derive_latency_model(load_latency_model("host"), load_target(target), src["device_ms_per_mac"]["fp32"],
                                 src["int8_over_fp32"], src["citations"], "")
    for precision, coef in model.coefficients.items():
        assert coef == pytest.approx(again.coefficients[precision], rel=1e-9), precision
