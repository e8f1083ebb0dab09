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
