"""Calibration plumbing that needs no export: the feedback refit."""

import numpy as np

from edgedistill.hardware.calibrate import refit_from_measurement
from edgedistill.hardware.latency_model import LatencyRecord, load_latency_model
from edgedistill.hardware.targets import load_target
from edgedistill.models.resnet import ResNetSpec


def test_a_few_measurements_only_rescale_the_prior():
    target = load_target("host")
    prior = load_latency_model("host")
    spec = ResNetSpec(1, 10, (16, 32, 64), (2, 2, 2))
    pred = prior.predict(spec, (1, 28, 28), "int8", 1)
    rec = LatencyRecord.from_model(spec, (1, 28, 28), "int8", 1, 2.0 * pred, "slow device")
    model = refit_from_measurement(target, [rec], prior=prior)
    assert model.coefficients == prior.coefficients
    assert model.predict(spec, (1, 28, 28), "int8", 1) == np.float64(2.0 * pred).item() or abs(
        model.predict(spec, (1, 28, 28), "int8", 1) / (2.0 * pred) - 1) < 1e-9
    assert model.sources[-1]["kind"] == "scale"


def test_the_scale_comes_from_the_targets_own_precision():
    """A build stores its int8 and fp32 exports' timings; a machine whose int8 runs at 0.3x the
    prior's prediction and fp32 at 1.0x must be rescaled by 0.3 for the (int8) choice, not by the
    two records' median (0.65), which made test_feedback's refit find no student within budget."""
    target = load_target("host")
    assert target.precision == "int8"
    prior = load_latency_model("host")
    spec = ResNetSpec(1, 10, (8, 16, 32), (2, 2, 2))
    recs = [LatencyRecord.from_model(spec, (1, 32, 32), p, 1, k * prior.predict(spec, (1, 32, 32), p, 1), "host")
            for p, k in (("int8", 0.3), ("fp32", 1.0))]
    model = refit_from_measurement(target, recs, prior=prior)
    assert abs(model.scale / (0.3 * prior.scale) - 1) < 1e-9
    assert abs(model.predict(spec, (1, 32, 32), "int8", 1) / recs[0].measured_ms - 1) < 1e-9
    assert "int8" in model.sources[-1]["what"]


def test_no_record_at_the_targets_precision_leaves_the_prior():
    target = load_target("host")
    prior = load_latency_model("host")
    spec = ResNetSpec(1, 10, (8, 16, 32), (2, 2, 2))
    rec = LatencyRecord.from_model(spec, (1, 32, 32), "fp32", 1, 5.0, "host")
    assert refit_from_measurement(target, [rec], prior=prior) is prior
