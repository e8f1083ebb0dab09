"""What a model costs on a target's runtime, read from its layers before anything is exported.

A model is described by the kernels the runtime will execute, not by its torch modules: one eager
forward pass at batch 1 is traced (a ``TorchFunctionMode`` sees every torch call, including the
functional ones inside ``forward`` such as attention's matmuls and softmax) and the calls are fused
the way LiteRT/XNNPACK fuses them (conv + batch-norm + relu is one kernel; an add followed by a relu
is one kernel; a linear followed by its activation is one kernel).

:meth:`ModelCost.features` turns those kernels into the features the latency model
(:mod:`edgedistill.hardware.latency_model`) is linear in, and :meth:`ModelCost.peak_memory_bytes`
into the memory estimate selection checks against a target's memory budget.

MACs are counted on XNNPACK's GEMM tiles (see ``GEMM_TILE``). A depthwise conv is not a GEMM (one
filter per channel; XNNPACK runs it with its own micro-kernels over tiles of channels), so its MACs
are counted per channel tile (``DW_CHANNEL_TILE``) and get their own feature. Attention scores
get their own feature because int8 batch-matmul and softmax run outside XNNPACK on LiteRT's builtin
kernels. ``bytes`` is weights plus every kernel's input and output activations at the precision's
element size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

FEATURES = ("fixed", "kernels", "conv_macs", "dw_macs", "fc_macs", "matmul_macs", "bytes", "elems", "attn_elems")
# MACs are counted on the GEMM tiles XNNPACK's micro-kernels compute: rows in blocks of MR, output
# channels in blocks of NR, each tap's input channels in blocks of KR. A 12-channel layer costs as
# much as a 16-channel one. (4, 16, 8) came from a one-off sweep of 24 combinations judged by
# held-out error on the 30 int8 host measurements of the time (calibration/README.md); no script here
# reruns it, and its choice saw the error it was judged by. `scripts/bench_latency_model.py` measures
# the shipped calibration on models outside the spread instead.
GEMM_TILE = (4, 16, 8)
# Depthwise micro-kernels process channels in blocks (XNNPACK's dwconv "up16x9" and kin).
DW_CHANNEL_TILE = 16
# Units the coefficients are stored in, so the JSON reads naturally: ms per unit below.
FEATURE_UNITS = {
    "fixed": "ms per invoke",
    "kernels": "ms per fused kernel",
    "conv_macs": "ms per conv multiply-accumulate (tile-padded)",
    "dw_macs": "ms per depthwise-conv multiply-accumulate (channels padded to DW_CHANNEL_TILE)",
    "fc_macs": "ms per fully-connected multiply-accumulate (tile-padded)",
    "matmul_macs": "ms per attention batch-matmul multiply-accumulate (tile-padded)",
    "bytes": "ms per byte moved (weights + kernel inputs and outputs)",
    "elems": "ms per element through a non-MAC kernel (norm, softmax, gelu, add, reduce, transpose)",
    "attn_elems": "ms per attention-score element (batch-matmul outputs and softmax; int8 attention leaves XNNPACK)",
}
ELEMENT_BYTES = {"int8": 1, "fp16": 2, "fp32": 4}
POINTER_BYTES = 8  # arm64 and x86-64
# A model's footprint = a * activations + b * weights + d * indirection + c (ModelCost.memory_features,
# bytes), per precision. Fitted by `scripts/fit_peak_memory.py` (2026-12-02) on the 27 real-resolution
# spread models at 96/160/224 px, each loaded and invoked by LiteRT + XNNPACK (4 threads) in a fresh
# process on this x86-64 host: these constants err by at most 3% on every one (2.5% with each size
# held out of the fit that made them). b ~ 2: the flatbuffer's weights and XNNPACK's packed copy;
# c ~ 10 MB: the runtime's own state (threadpool, delegate), paid once per process. Measured on x86-64
# only (RSS under qemu is the emulator's): arm64 builds of the same runtime are assumed alike.
# fp16 takes fp32's constants.
PEAK_MEMORY_FIT = {"int8": (1.15, 2.31, 1.23, 10.0 * 2**20), "fp32": (1.14, 1.96, 1.48, 10.2 * 2**20)}

_MAC_OPS = {"conv2d": "conv", "linear": "fc", "matmul": "matmul", "__matmul__": "matmul", "bmm": "matmul"}
_FUSABLE_INTO_PRODUCER = {"batch_norm", "relu", "relu_", "relu6", "hardtanh"}
_ELEMENTWISE = {
    "add", "__add__", "__iadd__", "__radd__", "mul", "__mul__", "__rmul__", "sub", "__sub__",
    "div", "__truediv__", "softmax", "layer_norm", "gelu", "sigmoid", "tanh", "silu", "hardswish",
    "mean", "sum", "batch_norm", "relu", "relu_", "relu6", "hardtanh", "max_pool2d", "avg_pool2d",
    "adaptive_avg_pool2d", "cat",
}
# LiteRT has no fused layer norm: mean, squared difference, mean, add, rsqrt, sub, mul (+ affine mul/add)
_LOWERED_OPS = {"layer_norm": 7}
_LAYOUT = {"transpose", "permute", "flatten", "reshape", "view", "contiguous"}
_FREE = {"flatten", "reshape", "view", "contiguous"}  # metadata-only when the data is already in order


@dataclass
class Kernel:
    """One kernel the runtime executes, with what it costs to run it."""

    op: str  # conv | dwconv | fc | matmul | elementwise | transpose
    torch_ops: list[str]  # the torch calls fused into it
    macs: int
    weight_elems: int
    in_elems: int
    out_elems: int
    count: int = 1  # runtime ops it lowers to (LiteRT writes a layer norm as ~7 elementwise ops)
    # GEMM shape of a MAC kernel: batch x (rows m, reduction k per tap x taps, columns n)
    gemm: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)  # (batch, m, k_per_tap, taps, n)


@dataclass
class ModelCost:
    """What the latency model and the memory estimate need to know about one model at batch 1."""

    kernels: list[Kernel]
    params: int

    def features(self, precision: str) -> dict[str, float]:
        eb = ELEMENT_BYTES[precision]
        f = dict.fromkeys(FEATURES, 0.0)
        f["fixed"] = 1.0
        for k in self.kernels:
            f["kernels"] += k.count
            if k.op == "dwconv":
                f["dw_macs"] += dw_padded_macs(k.gemm)
            elif k.op in ("conv", "fc", "matmul"):
                f[{"conv": "conv_macs", "fc": "fc_macs", "matmul": "matmul_macs"}[k.op]] += padded_macs(k.gemm)
            else:
                f["elems"] += k.count * max(k.in_elems, k.out_elems)
            if k.op == "matmul" or k.torch_ops[0] == "softmax":
                f["attn_elems"] += k.out_elems
            f["bytes"] += (k.weight_elems + k.count * (k.in_elems + k.out_elems)) * eb
        return f

    def memory_features(self, precision: str) -> dict[str, int]:
        """What a loaded model holds in memory, in bytes at ``precision`` (the terms of
        :meth:`peak_memory_bytes`): ``activations``, the largest input + output pair of any kernel
        (LiteRT plans its arena so tensors not alive at once share memory, and a kernel's input and
        output are alive together; residual shortcuts keep one more alive, hence a fitted
        multiple); ``weights``, which the flatbuffer holds and XNNPACK packs into a copy of its
        own; ``indirection``, XNNPACK's per-conv table of one pointer per output position and tap,
        kept for the model's life (a 7x7 stride-2 stem at 224 px: 4.9 MB, more than its weights)."""
        eb = ELEMENT_BYTES[precision]
        act = max((k.in_elems + k.out_elems for k in self.kernels), default=0)
        table = sum(k.gemm[0] * k.gemm[1] * k.gemm[3] for k in self.kernels
                    if k.op in ("conv", "dwconv") and k.gemm[3] > 1)  # 1x1 convs run as plain GEMMs
        return {"activations": act * eb, "weights": self.params * eb, "indirection": table * POINTER_BYTES}

    def peak_memory_bytes(self, precision: str) -> int:
        """The model's footprint in the process that runs it: :meth:`memory_features` weighted by
        the constants ``scripts/fit_peak_memory.py`` measured (``PEAK_MEMORY_FIT``), plus the
        runtime's own state (``c``: about 10 MB, paid once per process)."""
        f = self.memory_features(precision)
        a, b, d, c = PEAK_MEMORY_FIT.get(precision, PEAK_MEMORY_FIT["fp32"])
        return int(a * f["activations"] + b * f["weights"] + d * f["indirection"] + c)


def padded_macs(gemm: tuple[int, ...], tile: tuple[int, int, int] = GEMM_TILE) -> int:
    batch, m, k, taps, n = gemm
    mr, nr, kr = tile

    def up(v: int, r: int) -> int:
        return -(-v // r) * r

    return batch * up(m, mr) * up(k, kr) * taps * up(n, nr)


def dw_padded_macs(gemm: tuple[int, ...], tile: int = DW_CHANNEL_TILE) -> int:
    """Depthwise MACs: output positions x taps x channels rounded up to the channel tile."""
    batch, m, _k, taps, n = gemm
    return batch * m * taps * (-(-n // tile) * tile)


class _Recorder(TorchFunctionMode):
    """Records every top-level torch call of a forward pass (calls inside a call are not seen)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple, dict, Any]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "") or str(func)
        if isinstance(out, torch.Tensor):
            self.calls.append((name, args, kwargs, out))
        return out


def _tensors(args: Iterable) -> list[torch.Tensor]:
    out = []
    for a in args:
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(t for t in a if isinstance(t, torch.Tensor))
    return out


@torch.no_grad()
def trace_cost(model: nn.Module, input_shape: tuple[int, ...]) -> ModelCost:
    """Fused kernels of ``model`` on one input of ``input_shape`` (C, H, W), batch 1."""
    was_training = model.training
    model.eval()
    x = torch.zeros((1, *input_shape))
    rec = _Recorder()
    try:
        with rec:
            model(x)
    finally:
        model.train(was_training)
    params = {id(p) for p in model.parameters()} | {id(b) for b in model.buffers()}
    kernels: list[Kernel] = []
    producer: dict[int, Kernel] = {}  # id(output tensor) -> the kernel that can absorb its consumer
    for name, args, kwargs, out in rec.calls:
        ins = [t for t in _tensors(list(args) + list(kwargs.values())) if id(t) not in params]
        weights = [t for t in _tensors(list(args) + list(kwargs.values())) if id(t) in params]
        base = name.rstrip("_") if name not in ("__add__", "__iadd__", "__mul__", "__matmul__") else name
        if name in _MAC_OPS:
            op = _MAC_OPS[name]
            if op == "conv":
                w = args[1]  # (out, in // groups, kh, kw)
                groups = args[6] if len(args) > 6 else kwargs.get("groups", 1)
                gemm = (1, out.shape[2] * out.shape[3], w.shape[1], w.shape[2] * w.shape[3], w.shape[0])
                if groups > 1 and w.shape[1] == 1 and groups == w.shape[0]:
                    op = "dwconv"  # one filter per channel: XNNPACK's depthwise kernels, not a GEMM
            elif op == "fc":
                gemm = (1, out.numel() // out.shape[-1], args[1].shape[1], 1, out.shape[-1])
            else:
                gemm = (out.numel() // (out.shape[-2] * out.shape[-1]), out.shape[-2], ins[0].shape[-1], 1, out.shape[-1])
            macs = int(np.prod(gemm))
            k = Kernel(op, [name], int(macs), sum(t.numel() for t in weights),
                       sum(t.numel() for t in ins), out.numel(), 1, tuple(int(v) for v in gemm))
            kernels.append(k)
            producer[id(out)] = k
            continue
        src = ins[0] if ins else None
        if base in _FUSABLE_INTO_PRODUCER and src is not None and id(src) in producer:
            k = producer.pop(id(src))
            k.torch_ops.append(name)
            k.weight_elems += sum(t.numel() for t in weights) if base != "batch_norm" else 0
            producer[id(out)] = k
            continue
        if name in _LAYOUT:
            if name in _FREE and (src is None or src.is_contiguous()):
                # A reshape of contiguous data is metadata; keep fusion going through it.
                if src is not None and id(src) in producer:
                    producer[id(out)] = producer[id(src)]
                continue
            k = Kernel("transpose", [name], 0, 0, out.numel(), out.numel())
        elif name in _ELEMENTWISE:
            if not ins:
                continue
            k = Kernel("elementwise", [name], 0, sum(t.numel() for t in weights),
                       sum(t.numel() for t in ins), out.numel(), _LOWERED_OPS.get(name, 1))
        else:
            continue  # shape queries, getitem and friends: no kernel
        kernels.append(k)
        if base in ("add", "__add__", "__iadd__"):
            producer[id(out)] = k  # add + relu fuse
    return ModelCost(kernels, sum(p.numel() for p in model.parameters()))


def model_cost(spec_or_model: Any, input_shape: tuple[int, ...]) -> ModelCost:
    if isinstance(spec_or_model, nn.Module):
        return trace_cost(spec_or_model, input_shape)
    from edgedistill.models import create_model

    return trace_cost(create_model(spec_or_model), input_shape)
