"""Bias correction (edgedistill.quantize.bias_correction): the mean error that int8 weights cause
on a layer's output is measured on calibration images and taken out of the layer's float bias."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgedistill.quantize import litert_patch
from edgedistill.quantize.bias_correction import correct_biases
from edgedistill.quantize.qat import batch_dim, make_quantizer


class EdgeNet(nn.Module):
    """A stem, then a depthwise conv of near-zero-sum edge filters (one large tap against eight
    negative ones, as the high-gain filters BatchNorm folds into a student initialised from
    EfficientNet-Lite0): each small tap sits 0.4 of an int8 step from where it rounds, all the
    same way, so int8 shifts the layer's output by most of its signal."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU6())
        self.head = nn.Linear(8, 5)
        step = 0.1  # the per-channel int8 step: the largest tap is 127 of them
        with torch.no_grad():
            taps = torch.full((8, 1, 3, 3), -15.4 * step)
            taps[:, 0, 1, 1] = 127 * step
            self.dw[0].weight.copy_(taps)
            self.dw[0].bias.fill_(1.0)

    def forward(self, x):
        return self.head(self.dw(self.stem(x)).mean(dim=(2, 3)))


def _smooth_images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 3, 4, 4, generator=g)
    return nn.functional.interpolate(coarse, size=(24, 24), mode="bilinear", align_corners=False)


def _ptq(model: nn.Module, calib: torch.Tensor) -> torch.fx.GraphModule:
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    litert_patch.install()
    graph = torch.export.export(model.eval(), (calib[:2],), dynamic_shapes=({0: batch_dim()},)).module()
    prepared = prepare_pt2e(graph, make_quantizer(qat=False))
    with torch.no_grad():
        prepared(calib)
    converted = convert_pt2e(prepared, fold_quantize=False)
    move_exported_model_to_eval(converted)
    return converted


@pytest.fixture(scope="module")
def model_and_graph():
    model = EdgeNet()
    with torch.no_grad():  # BatchNorm statistics of the data it will see
        model.train()
        model(_smooth_images(256, seed=1))
    model.eval()
    return model, _ptq(model, _smooth_images(64, seed=2))


def _logit_errors(model, graph, x) -> tuple[float, float]:
    """(|mean error| of the int8 logits, their RMS error), against the float model."""
    with torch.no_grad():
        err = graph(x) - model(x)
    return float(err.mean(0).abs().max()), float(err.pow(2).mean().sqrt())


def test_correction_removes_the_mean_error_on_unseen_images(model_and_graph):
    import copy

    model, graph = model_and_graph
    corrected = copy.deepcopy(graph)
    weights = {k: v.clone() for k, v in corrected.state_dict().items() if k.endswith("weight")}
    held_out = _smooth_images(256, seed=3)
    bias_before, rms_before = _logit_errors(model, graph, held_out)

    result = correct_biases(corrected, [_smooth_images(64, seed=4), _smooth_images(64, seed=5)])

    bias_after, rms_after = _logit_errors(model, corrected, held_out)
    assert result.layers == 3 and result.images == 128 and result.max_shift > 0.05
    assert bias_before > 0.03, "the fixture's int8 weights should shift the logits"
    assert bias_after < bias_before / 2  # measured: 0.040 -> 0.011
    assert rms_after < rms_before
    # Only biases move: the int8 weights, and so the fully integer model, are what they were.
    assert all(torch.equal(v, corrected.state_dict()[k]) for k, v in weights.items())


def test_a_graph_without_quantized_weights_is_left_alone():
    model = EdgeNet().eval()
    graph = torch.export.export(model, (torch.zeros(2, 3, 24, 24),)).module()
    before = {k: v.clone() for k, v in graph.state_dict().items()}
    result = correct_biases(graph, [_smooth_images(8, seed=6)])
    assert result.layers == 0 and result.images == 0
    assert all(torch.equal(v, graph.state_dict()[k]) for k, v in before.items())


def test_qat_weight_ranges_follow_the_weights_as_they_are():
    """A moving average of weight ranges trails the weights QAT moves, and clips them at convert."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    litert_patch.install()
    graph = torch.export.export(EdgeNet().train(), (torch.zeros(2, 3, 24, 24),)).module()
    prepared = prepare_qat_pt2e(graph, make_quantizer())
    observers = [m.activation_post_process for m in prepared.modules()
                 if hasattr(m, "activation_post_process") and hasattr(m.activation_post_process, "ch_axis")
                 and m.activation_post_process.__class__.__name__.endswith("PerChannelMinMaxObserver")]
    assert len(observers) == 3  # the stem, the depthwise conv and the head
    assert all(o.averaging_constant == 1.0 for o in observers)


def test_clearly_better_needs_more_than_a_few_images():
    from edgedistill.quantize.qat import clearly_better

    base = torch.ones(300, dtype=torch.bool)
    one_off = base.clone()
    one_off[0] = False
    assert not clearly_better(base, one_off)  # 1 image of 300
    worse = base.clone()
    worse[:20] = False
    assert clearly_better(base, worse) and not clearly_better(worse, base)
