"""Predict a student's latency on a target's runtime from its layers, before anything is exported.

A model is described by the kernels the runtime will execute, not by its torch modules: one eager
forward pass at batch 1 is traced (a ``TorchFunctionMode`` sees every torch call, including the
functional ones inside ``forward`` such as attention's matmuls and softmax) and the calls are fused
the way LiteRT/XNNPACK fuses them (conv + batch-norm + relu is one kernel; an add followed by a relu
is one kernel; a linear followed by its activation is one kernel).

Latency is linear in a few features of those kernels, one coefficient set per precision:

    ms = fixed + per_kernel * kernels + per_conv_mac * conv_MACs + per_dw_mac * depthwise_MACs
         + per_fc_mac * fc_MACs
         + per_matmul_mac * attention_matmul_MACs + per_byte * bytes_moved
         + per_elem * elements of non-MAC kernels + per_attn_elem * attention-score elements

MACs are counted on XNNPACK's GEMM tiles (see ``GEMM_TILE``). A depthwise conv is not a GEMM (one
filter per channel; XNNPACK runs it with its own micro-kernels over tiles of channels), so its MACs
are counted per channel tile (``DW_CHANNEL_TILE``) and get their own coefficient. Attention scores
get their own term because int8 batch-matmul and softmax run outside XNNPACK on LiteRT's builtin kernels.

``bytes_moved`` is weights plus every kernel's input and output activations at the precision's
element size. Coefficients are fitted by non-negative least squares on relative error (each
measurement's row is divided by its latency, so a 50 us model counts as much as a 5 ms one).
Threads other than the fitted count scale the compute terms by an Amdahl factor with a stated
parallel efficiency; measuring at the target's own thread count avoids relying on it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

FEATURES = ("fixed", "kernels", "conv_macs", "dw_macs", "fc_macs", "matmul_macs", "bytes", "elems", "attn_elems")
# MACs are counted on the GEMM tiles XNNPACK's micro-kernels compute: rows in blocks of MR, output
# channels in blocks of NR, each tap's input channels in blocks of KR. A 12-channel layer costs as
# much as a 16-channel one. (4, 16, 8) was picked by a sweep on host measurements (see README).
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
_COMPUTE = ("conv_macs", "dw_macs", "fc_macs", "matmul_macs", "elems", "attn_elems")  # terms threads divide
DEFAULT_PARALLEL_EFFICIENCY = 0.6  # assumed share of ideal speed-up per extra thread (compute terms only)

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

    def peak_memory_bytes(self, precision: str) -> int:
        """Arena estimate: the largest input + output activation pair of any kernel, plus weights.

        LiteRT plans its arena so tensors that are not alive at once share memory; a kernel's input
        and output are alive together, so the largest pair is a lower bound on the arena and, for
        plain chains, close to it. Residual shortcuts keep one more tensor alive, so this is an
        estimate, not a bound.
        """
        eb = ELEMENT_BYTES[precision]
        act = max((k.in_elems + k.out_elems for k in self.kernels), default=0)
        return int(act * eb + self.params * eb)


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


@dataclass
class LatencyRecord:
    """One measured latency with the features of the model that was measured."""

    features: dict[str, float]
    precision: str
    threads: int
    measured_ms: float
    name: str = ""
    source: str = ""

    @classmethod
    def from_model(cls, spec_or_model: Any, input_shape: tuple[int, ...], precision: str, threads: int,
                   measured_ms: float, name: str = "", source: str = "") -> "LatencyRecord":
        feats = model_cost(spec_or_model, input_shape).features(precision)
        return cls(feats, precision, threads, float(measured_ms), name, source)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyRecord":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


def nnls(a: np.ndarray, b: np.ndarray, ridge: float = 0.0) -> np.ndarray:
    """Non-negative least squares (scipy's Lawson-Hanson), optionally with a small ridge term."""
    from scipy.optimize import nnls as _nnls

    if ridge > 0:
        a = np.vstack([a, math.sqrt(ridge) * np.eye(a.shape[1])])
        b = np.concatenate([b, np.zeros(a.shape[1])])
    return _nnls(a, b, maxiter=50 * a.shape[1])[0]


@dataclass
class LatencyModel:
    """Per-precision coefficients (ms per feature unit) for one target's runtime.

    ``coefficients[precision][feature]``; ``threads`` the thread count they were fitted or derived
    at; ``scale`` multiplies every prediction (the cheap refit when only a few measurements exist);
    ``sources`` says where each figure came from (measurements with their command, or citations).
    """

    target: str
    runtime: str
    threads: int
    coefficients: dict[str, dict[str, float]] = field(default_factory=dict)
    scale: float = 1.0
    parallel_efficiency: float = DEFAULT_PARALLEL_EFFICIENCY
    sources: list[dict] = field(default_factory=list)
    fit_summary: dict = field(default_factory=dict)
    # Set when the target has no calibration of its own: the shipped target whose coefficients
    # these are (see :func:`latency_model_for`).
    derived_from: str = ""
    # The file it was read from when that is not a shipped calibration (a user's own, or the
    # cache's from `edgedistill calibrate`), so that the description says which one was used.
    origin: str = ""

    def describe(self, target_name: str | None = None) -> str:
        """One line for the build's output, the selection table and the manifest."""
        name = target_name or self.target
        if self.derived_from:
            how = next((s.get("what", "") for s in self.sources if s.get("kind") == NEAREST_KIND), "")
            return (f"{name} latency model derived from {self.derived_from}'s calibration "
                    f"(no calibration/{name}.json{'; ' + how if how else ''})")
        kinds = ", ".join(s.get("kind", "?") for s in self.sources) or "no sources"
        return f"{name} latency model ({kinds}{'; from ' + self.origin if self.origin else ''})"

    # --- fitting ------------------------------------------------------------------------------
    def fit(self, records: list[LatencyRecord], ridge: float = 1e-3) -> "LatencyModel":
        """Refit the coefficients of every precision that has at least one record.

        Rows are features divided by feature scale and by the measured latency (relative error);
        with fewer records than features the tiny ridge keeps the solution unique.
        """
        for precision in sorted({r.precision for r in records}):
            rows = [r for r in records if r.precision == precision]
            x = np.array([[self._thread_adjusted(r.features, r.threads)[f] for f in FEATURES] for r in rows])
            y = np.array([r.measured_ms for r in rows])
            colscale = np.maximum(np.abs(x).max(axis=0), 1e-12)
            a = (x / colscale) / y[:, None]
            coef = nnls(a, np.ones(len(rows)), ridge) / colscale
            self.coefficients[precision] = {f: float(c) for f, c in zip(FEATURES, coef)}
            pred = x @ coef
            err = np.abs(pred / y - 1.0) * 100
            self.fit_summary[precision] = {
                "n": len(rows), "median_abs_pct_err": float(np.median(err)), "max_abs_pct_err": float(err.max()),
            }
        self.scale = 1.0
        return self

    def _thread_adjusted(self, feats: dict[str, float], threads: int) -> dict[str, float]:
        """Features of a run at ``threads`` expressed as if run at ``self.threads`` (compute terms)."""
        if threads == self.threads:
            return feats
        factor = self._speedup(self.threads) / self._speedup(threads)
        return {f: (v * factor if f in _COMPUTE else v) for f, v in feats.items()}

    def _speedup(self, threads: int) -> float:
        return 1.0 + self.parallel_efficiency * (max(1, threads) - 1)

    # --- prediction ---------------------------------------------------------------------------
    def predict_features(self, feats: dict[str, float], precision: str, threads: int | None = None) -> float:
        if precision not in self.coefficients:
            known = ", ".join(sorted(self.coefficients)) or "none"
            raise KeyError(f"latency model for {self.target} has no {precision} coefficients (has: {known})")
        coef = self.coefficients[precision]
        f = feats
        if threads and threads != self.threads:
            # compute terms shrink with threads; fixed and per-kernel overheads do not
            factor = self._speedup(self.threads) / self._speedup(threads)
            f = {k: (v * factor if k in _COMPUTE else v) for k, v in feats.items()}
        return self.scale * sum(coef.get(k, 0.0) * f.get(k, 0.0) for k in FEATURES)

    def predict(self, spec: Any, input_shape: tuple[int, ...], precision: str | None = None,
                threads: int | None = None) -> float:
        """Predicted median latency in ms of ``spec`` (a zoo spec or an nn.Module) at batch 1."""
        precision = precision or next(iter(self.coefficients))
        return self.predict_features(model_cost(spec, input_shape).features(precision), precision, threads)

    def with_scale(self, scale: float) -> "LatencyModel":
        return dataclasses.replace(self, scale=float(scale), coefficients={k: dict(v) for k, v in self.coefficients.items()})

    # --- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "target": self.target, "runtime": self.runtime, "threads": self.threads,
            "features": dict(FEATURE_UNITS), "coefficients": self.coefficients, "scale": self.scale,
            "parallel_efficiency": self.parallel_efficiency, "sources": self.sources, "fit_summary": self.fit_summary,
            **({"derived_from": self.derived_from} if self.derived_from else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyModel":
        return cls(
            target=str(d["target"]), runtime=str(d.get("runtime", "litert")), threads=int(d.get("threads", 1)),
            coefficients={p: {f: float(v) for f, v in c.items()} for p, c in d.get("coefficients", {}).items()},
            scale=float(d.get("scale", 1.0)),
            parallel_efficiency=float(d.get("parallel_efficiency", DEFAULT_PARALLEL_EFFICIENCY)),
            sources=list(d.get("sources", [])), fit_summary=dict(d.get("fit_summary", {})),
            derived_from=str(d.get("derived_from", "")),
        )

    def save(self, path: Path) -> Path:
        from edgedistill.fsutil import write_json_atomic

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, self.to_dict())
        return path


NEAREST_KIND = "nearest-target"  # the source kind of a model borrowed from another target


def calibration_path(target_name: str) -> Path:
    """The shipped calibration file of a target: in a checkout the repository's
    ``calibration/<target>.json`` (what ``calibrate --write-repo`` and
    ``scripts/derive_calibration.py`` write); in a wheel install its package data (read-only)."""
    from edgedistill.paths import calibration_dir

    return calibration_dir() / f"{target_name}.json"


def user_calibration_path(target_name: str) -> Path:
    """``<cache>/calibration/<target>.json``: what ``edgedistill calibrate`` writes by default."""
    from edgedistill.paths import user_calibration_dir

    return user_calibration_dir() / f"{target_name}.json"


def find_calibration(target_name: str) -> Path | None:
    """The calibration file a target's latency model is read from, or None when it has none.

    The user's own (``<cache>/calibration/<target>.json``, which ``edgedistill calibrate`` writes
    unless told ``--write-repo``/``--out``) comes first, then the shipped one
    (:func:`calibration_path`); so a calibration measured on this machine is used without
    touching the checkout or the installed package.
    """
    for path in (user_calibration_path(target_name), calibration_path(target_name)):
        if path.is_file():
            return path
    return None


def load_latency_model(target_name: str, path: Path | None = None) -> LatencyModel:
    """The target's latency model from ``path``, else from :func:`find_calibration`'s file."""
    from edgedistill.errors import InputError

    path = Path(path) if path is not None else find_calibration(target_name)
    if path is None or not path.is_file():
        missing = (f"{path} does not exist" if path is not None else
                   f"neither {user_calibration_path(target_name)} nor {calibration_path(target_name)} exists")
        raise InputError(
            f"no latency calibration for target {target_name!r}: {missing}",
            hint=f"run `edgedistill calibrate --target {target_name}` on a device of that kind, or copy "
                 "calibration/host.json and edit its sources",
        )
    try:
        data = json.loads(path.read_text())
        model = LatencyModel.from_dict(data["latency_model"] if "latency_model" in data else data)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"latency calibration {path} is malformed: {exc}") from exc
    if path.resolve() != calibration_path(target_name).resolve():
        model.origin = str(path)
    return model


def nearest_calibrated_target(target) -> tuple[Any, Path] | None:
    """The shipped target whose calibration stands in for ``target``'s missing one, with its file.

    Candidates are the targets of :func:`~edgedistill.paths.targets_dir` (the shipped ones) other
    than ``target`` that run the same runtime and have a calibration (:func:`find_calibration`)
    with coefficients for ``target``'s precision. "Nearest" is the first in this order: the same
    delegate, then the same precision, then the same ABI (the same instruction set says more
    about per-MAC cost than the thread count, which the model scales), then the smallest
    difference in threads, then the name (alphabetical, so the choice is stable). None when there
    is no candidate.
    """
    from edgedistill.select.targets import available_targets, load_target

    ranked = []
    for name in available_targets():
        other = load_target(name)
        if other.name == target.name or other.runtime != target.runtime:
            continue
        path = find_calibration(other.name)
        if path is None:
            continue
        if target.precision not in load_latency_model(other.name, path).coefficients:
            continue
        key = (other.delegate != target.delegate, other.precision != target.precision,
               other.abi != target.abi, abs(other.threads - target.threads), other.name)
        ranked.append((key, other, path))
    if not ranked:
        return None
    _, other, path = min(ranked, key=lambda r: r[0])
    return other, path


def latency_model_for(target) -> LatencyModel:
    """The latency model the build and ``select`` use for ``target`` (a :class:`Target`).

    Its own calibration (:func:`find_calibration`) when it has one. Otherwise, for a user's own
    target, the calibration of the nearest shipped target of the same runtime
    (:func:`nearest_calibrated_target`), used as it is: its coefficients keep their thread count
    and predictions at the target's threads scale the compute terms by the model's parallel
    efficiency, as for any other thread count. The model says so (:meth:`LatencyModel.describe`:
    "derived from rpi4's calibration (no calibration/<name>.json; ...)"). With no such target,
    an :class:`~edgedistill.errors.InputError` says what to run or write.
    """
    from edgedistill.errors import InputError

    path = find_calibration(target.name)
    if path is not None:
        return load_latency_model(target.name, path)
    nearest = nearest_calibrated_target(target)
    if nearest is None:
        how = (f"run `edgedistill calibrate --target {target.path}` here (it writes "
               f"{user_calibration_path(target.name)})" if target.device_kind == "local" else
               f"measure on a {target.name} device and write {user_calibration_path(target.name)}")
        raise InputError(
            f"no latency calibration for target {target.name!r} ({target.path}): no "
            f"{user_calibration_path(target.name)} or {calibration_path(target.name)}, and no shipped "
            f"{target.runtime} target to derive one from",
            hint=f"{how}, or write calibration/{target.name}.json (see calibration/README.md)",
        )
    other, base_path = nearest
    base = load_latency_model(other.name, base_path)
    same = [f"{k} {getattr(target, k)}" for k in ("delegate", "precision", "abi")
            if getattr(other, k) == getattr(target, k) and getattr(target, k)]
    threads = (f"{base.threads} threads" if base.threads == target.threads else
               f"{base.threads} threads, scaled to {target.threads} with parallel efficiency "
               f"{base.parallel_efficiency:g}")
    what = (f"nearest shipped {target.runtime} target: {', '.join(same + [threads])}; "
            f"an estimate until {target.name} is measured")
    return dataclasses.replace(
        base, target=target.name, derived_from=other.name, origin=str(base_path),
        coefficients={p: dict(c) for p, c in base.coefficients.items()},
        sources=[{"kind": NEAREST_KIND, "base": other.name, "file": str(base_path), "what": what}] + list(base.sources),
    )
