"""Conv (+ BatchNorm) + ReLU6 is quantized as one op (edgedistill.quantize.clamp_fusion): the
observer sits after the clamp, so [0, 6] keeps its 256 levels however wide the conv's own range."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgedistill.quantize import litert_patch
from edgedistill.quantize.clamp_fusion import clamp_fusing_quantizer
from edgedistill.quantize.qat import batch_dim, make_quantizer


class Relu6Net(nn.Module):
    """Two conv-BN-ReLU6 blocks whose BatchNorms amplify: pre-activations span about +-60."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
        )
        self.head = nn.Linear(8, 4)
        torch.manual_seed(0)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(20.0)

    def forward(self, x):
        return self.head(self.body(x).mean(dim=(2, 3)))


def _ptq(model, quantizer, x):
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    litert_patch.install()
    graph = torch.export.export(model.eval(), (x[:2],), dynamic_shapes=({0: batch_dim()},)).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        prepared(x)
    converted = convert_pt2e(prepared, fold_quantize=False)
    move_exported_model_to_eval(converted)
    return converted


def _clamp_scales(graph) -> list[float]:
    """The scale of the quantize op that reads each ReLU6's output."""
    scales = []
    for node in graph.graph.nodes:
        if "hardtanh" in str(node.target):
            for user in node.users:
                if "quantize_per_tensor" in str(user.target):
                    scales.append(float(user.args[1]))
    return scales


@pytest.fixture(scope="module")
def net_and_inputs():
    torch.manual_seed(1)
    return Relu6Net().eval(), torch.randn(64, 3, 12, 12)


def test_relu6_outputs_keep_their_levels_and_the_int8_graph_follows_the_float_one(net_and_inputs):
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    net, x = net_and_inputs
    config = get_symmetric_quantization_config(is_per_channel=True, is_qat=False)
    fused = _ptq(net, clamp_fusing_quantizer(config), x)
    library = _ptq(net, PT2EQuantizer().set_global(config), x)
    assert all(s <= 6.0 / 255 * 1.01 for s in _clamp_scales(fused)) and len(_clamp_scales(fused)) == 2
    # The library alone still observes the pre-activation range: the day it fuses ReLU6 itself,
    # this fails and clamp_fusion can go.
    assert max(_clamp_scales(library)) > 10 * 6.0 / 255
    with torch.no_grad():
        ref = net(x)
        err_fused = (fused(x) - ref).abs().mean()
        err_library = (library(x) - ref).abs().mean()
    assert err_fused < err_library / 3


@pytest.mark.slow
def test_qat_fuses_conv_batchnorm_relu6_too(net_and_inputs):
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    net, x = net_and_inputs
    litert_patch.install()
    graph = torch.export.export(net.train(), (x[:2],), dynamic_shapes=({0: batch_dim()},)).module()
    prepared = prepare_qat_pt2e(graph, make_quantizer())
    move_exported_model_to_train(prepared)
    with torch.no_grad():
        for i in range(0, len(x), 16):
            prepared(x[i : i + 16])
    move_exported_model_to_eval(prepared)
    converted = convert_pt2e(prepared, fold_quantize=False)
    scales = _clamp_scales(converted)
    assert len(scales) == 2 and all(s <= 6.0 / 255 * 1.01 for s in scales)
