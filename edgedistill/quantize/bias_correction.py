"""Bias correction of an int8 reference graph (Nagel et al., 2019, "Data-Free Quantization Through
Weight Equalization and Bias Correction", the empirical form).

Rounding a layer's weights to int8 errs by ``dW = W_q - W``, and that error is not zero-mean on
the layer's output: ``conv(x, dW)`` has the mean ``E[conv(x, dW)]`` per output channel, a shift
that every later layer inherits. It is largest where BatchNorm folded a large gain into few taps:
an EfficientNet-Lite-style student initialised from its teacher has, in its first depthwise conv,
filters like ``[30.5, -28.0, ...]`` (gain 16 over a near-zero-sum edge filter), which int8 rounds
in steps of 0.24. Measured on such a 96 px student (fp32 89.6% test): quantizing that one layer's
weights alone took it to 88.4%; the whole int8 graph scored 86.4%, and 89.0% once corrected
(``scripts/bench_quantize_clamp.py --student RUN/STUDENT/distill --data DATA --calibration 320``).

The correction subtracts that mean from the layer's float bias, which LiteRT then quantizes to
int32 with the rest: the shipped model is still fully integer, and no op is added. The mean is
measured, not modelled: ``x`` is the layer's input *in the quantized graph* on calibration images,
so each layer corrects its own rounding error only (correcting against the float model's outputs
instead would have every layer also undo its predecessors' error: measured, that overcorrects).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch

_ATEN = torch.ops.aten


@dataclass
class BiasCorrection:
    layers: int = 0  # conv / linear layers whose bias was corrected
    images: int = 0  # calibration images the means were measured on
    max_shift: float = 0.0  # the largest correction of one output channel's bias

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Layer:
    node: torch.fx.Node  # the conv2d / linear call
    weight_dq: torch.fx.Node  # its weight: dequantize(quantize(get_attr))
    weight_attr: str
    bias_attr: str


def _attr(module: torch.nn.Module, name: str) -> torch.Tensor:
    return functools.reduce(getattr, name.split("."), module)


def _is_dequantize(node) -> bool:
    return isinstance(node, torch.fx.Node) and node.op == "call_function" and "dequantize" in str(node.target)


def _layers(graph: torch.fx.GraphModule) -> list[_Layer]:
    """Every conv2d / linear whose weight is a quantized constant and whose bias is a float one."""
    found = []
    for node in graph.graph.nodes:
        if node.op != "call_function" or node.target not in (_ATEN.conv2d.default, _ATEN.linear.default):
            continue
        weight, bias = node.args[1], node.args[2] if len(node.args) > 2 else None
        if not _is_dequantize(weight) or not isinstance(bias, torch.fx.Node) or bias.op != "get_attr":
            continue
        quant = weight.args[0]
        source = quant.args[0] if isinstance(quant, torch.fx.Node) and quant.args else None
        if isinstance(source, torch.fx.Node) and source.op == "get_attr":
            found.append(_Layer(node, weight, source.target, bias.target))
    return found


class _ErrorMeans(torch.fx.Interpreter):
    """Runs the graph and adds, per layer, the sum and count of ``layer(x, dW)`` per output channel."""

    def __init__(self, graph: torch.fx.GraphModule, layers: list[_Layer], sums: dict):
        super().__init__(graph)
        self.by_node = {layer.node: layer for layer in layers}
        self.sums = sums

    def run_node(self, node):
        out = super().run_node(node)
        layer = self.by_node.get(node)
        if layer is not None:
            x = self.env[node.args[0]]
            d_w = self.env[layer.weight_dq] - _attr(self.module, layer.weight_attr)
            # The layer's own op on the weight error alone (no bias): stride, padding, groups as the layer's.
            err = node.target(x, d_w, None, *node.args[3:], **node.kwargs)
            channel = 1 if node.target == _ATEN.conv2d.default else err.dim() - 1
            total = err.sum([d for d in range(err.dim()) if d != channel])
            count = err.numel() // err.shape[channel]
            s, n = self.sums.get(node.name, (0.0, 0))
            self.sums[node.name] = (s + total, n + count)
        return out


def correct_biases(graph: torch.fx.GraphModule, batches: Iterable[torch.Tensor]) -> BiasCorrection:
    """Correct, in place, the float biases of ``graph`` (a ``convert_pt2e(..., fold_quantize=False)``
    reference graph) for the mean error its int8 weights cause, measured on ``batches`` of input."""
    layers = _layers(graph)
    result = BiasCorrection(layers=len(layers))
    if not layers:
        return result
    sums: dict = {}
    with torch.no_grad():
        for batch in batches:
            _ErrorMeans(graph, layers, sums).run(batch)
            result.images += len(batch)
        for layer in layers:
            if layer.node.name not in sums:
                continue
            total, count = sums[layer.node.name]
            shift = total / max(1, count)
            _attr(graph, layer.bias_attr).sub_(shift.to(_attr(graph, layer.bias_attr).dtype))
            result.max_shift = max(result.max_shift, float(shift.abs().max()))
    return result
