"""Multi-process training with ``torchrun`` and DistributedDataParallel.

``torchrun`` starts the processes and sets RANK, WORLD_SIZE and LOCAL_RANK; nothing here spawns or
supervises a process. :func:`edgedistill.distill.trainer.train` calls :func:`init_from_env`, so
the same call trains in one process or in many. The helpers below are what the loops need from the
process group: each rank's share of a step's global batch (the DistributedSampler rule, weighted
so that the ranks' mean loss is the global batch's), BatchNorm over the global batch, the DDP
wrapper, and broadcasts that keep every rank's weights identical.

Besides the training group (NCCL on GPUs, gloo on CPUs) there is a gloo *control* group with a
long timeout: rank 0 of a build sends its decisions over it (:mod:`edgedistill.distill.jobs`), and
the other ranks may wait on it for as long as rank 0 exports, verifies and benchmarks.

Nothing here imports the trainer: it imports this module.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn


def _env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process (or launched as one)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    return _env_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_from_env() -> bool:
    """Join the process group ``torchrun`` described in the environment; a no-op in a single
    process or when already joined. NCCL when CUDA is available, gloo otherwise."""
    if _env_world_size() <= 1 or not dist.is_available() or dist.is_initialized():
        return dist.is_available() and dist.is_initialized()
    if "MASTER_ADDR" not in os.environ:
        raise RuntimeError(
            f"WORLD_SIZE={_env_world_size()} is set but MASTER_ADDR is not; launch with "
            "`torchrun --nproc_per_node N ...` rather than setting the variables by hand"
        )
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, timeout=TRAINING_TIMEOUT)
    global _CONTROL
    # Every rank must create the group, in the same order, right after joining.
    _CONTROL = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
    return True


# A training collective that waits this long means a rank hung; the control group waits while
# rank 0 alone exports, verifies and benchmarks (minutes to hours on a real device farm).
TRAINING_TIMEOUT = timedelta(minutes=30)
CONTROL_TIMEOUT = timedelta(hours=24)
_CONTROL = None


def control_group():
    """The gloo group rank 0's decisions travel on (None outside a process group: the default)."""
    return _CONTROL


def broadcast_object(obj, src: int = 0):
    """``obj`` from rank ``src`` on every rank (pickled, over the control group)."""
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src, group=_CONTROL)
    return box[0]


def per_rank_batch(global_batch: int, world: int) -> int:
    """Each process's share of the global batch. When ``world`` does not divide it, the global
    batch is rounded up (per-process x world is what the report states)."""
    return max(1, math.ceil(global_batch / max(1, world)))


def peer_lost(exc: BaseException) -> bool:
    """True for the error a collective raises when another rank died or went away."""
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(m in text for m in (
        "Connection closed by peer", "Connection reset by peer", "remote worker crashing",
        "NCCL communicator was aborted", "Broken pipe"))


def share(
    perm: torch.Tensor, views: torch.Tensor | None, start: int, batch: int, rank: int, world: int
) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """This rank's part of the global batch ``perm[start : start + batch * world]``: every
    ``world``-th item from ``rank`` (DistributedSampler's rule within the step), its views, and
    the weight of its mean loss. The weight is local count x world / global count: DDP averages
    the ranks' gradients, so the weighted mean is the global batch's mean even when the last
    batch does not split evenly. A rank left with nothing trains on a stand-in sample at weight 0,
    since every rank must take every step."""
    g = perm[start : start + batch * world]
    gv = views[start : start + batch * world] if views is not None else None
    if world == 1:
        return g, gv, 1.0
    idx = g[rank::world]
    if len(idx) == 0:
        return g[:1], (gv[:1] if gv is not None else None), 0.0
    return idx, (gv[rank::world] if gv is not None else None), len(idx) * world / len(g)


def _group(t: torch.Tensor):
    """The group for a collective on ``t``: the training group, except CPU tensors in an NCCL job
    (a QAT graph, or ``--device cpu`` on a GPU machine), which go over the gloo control group."""
    if t.device.type == "cpu" and dist.get_backend() == "nccl":
        return _CONTROL
    return None


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index or 0], output_device=device.index or 0)
    return DistributedDataParallel(model, process_group=_group(torch.empty(0)))


def broadcast_state(module: nn.Module, src: int = 0) -> None:
    """Copy every parameter and buffer of ``module`` from rank ``src`` to all ranks."""
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src, group=_group(t))


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """BatchNorm running statistics drift apart per shard; take rank ``src``'s."""
    with torch.no_grad():
        for b in module.buffers():
            dist.broadcast(b.data, src, group=_group(b))


def average_gradients(module: nn.Module) -> None:
    world = dist.get_world_size()
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, group=_group(p.grad))
            p.grad.div_(world)


@contextmanager
def synced_batchnorm(model: nn.Module):
    """While inside, every BatchNorm of ``model`` normalises a training batch with the statistics
    of the global batch (summed over the ranks, differentiably), as one process would: per-rank
    statistics of a smaller batch made a 2-process build learn measurably worse than one
    process at the same global batch. torch's SyncBatchNorm would do it on GPUs only; this works
    on gloo too, on modules and on the ``aten.batch_norm`` ops of an exported graph (QAT).
    Evaluation mode is untouched (the running statistics are the same on every rank)."""
    patched, swapped = [], []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and "forward" not in m.__dict__:
            m.forward = _synced_forward(m, m.forward)  # an instance attribute: the class stays
            patched.append(m)
    if isinstance(model, torch.fx.GraphModule):
        for node in model.graph.nodes:
            if node.op == "call_function" and node.target is torch.ops.aten.batch_norm.default:
                node.target = _graph_batch_norm
                swapped.append(node)
        model.recompile()
    try:
        yield
    finally:
        for m in patched:
            del m.forward
        for node in swapped:
            node.target = torch.ops.aten.batch_norm.default
        if swapped:
            model.recompile()


def _global_batch_norm(x, weight, bias, running_mean, running_var, momentum: float, eps: float):
    c, dims = x.shape[1], [0, *range(2, x.dim())]
    xf = x.float()
    count = torch.full((1,), xf.numel() / c, dtype=torch.float32, device=x.device)
    stats = _differentiable_sum(torch.cat([xf.sum(dims), (xf * xf).sum(dims), count]))
    n = stats[-1]
    mean = stats[:c] / n
    var = (stats[c:2 * c] / n - mean * mean).clamp_min(0.0)  # biased, as BatchNorm normalises
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
            running_var.mul_(1 - momentum).add_(var.detach() * n / (n - 1).clamp_min(1.0), alpha=momentum)
    shape = [1, c] + [1] * (x.dim() - 2)
    y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + eps)
    if weight is not None:
        y = y * weight.view(shape)
    if bias is not None:
        y = y + bias.view(shape)
    return y.to(x.dtype)


def _differentiable_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over the ranks, with gradients flowing back to every rank's share."""
    import warnings

    from torch.distributed.nn.functional import all_reduce

    with warnings.catch_warnings():  # deprecated for a private successor; still the differentiable one
        warnings.simplefilter("ignore", FutureWarning)
        return all_reduce(t, group=_group(t) or dist.group.WORLD)


def _synced_forward(bn: nn.modules.batchnorm._BatchNorm, plain):
    def forward(x: torch.Tensor) -> torch.Tensor:
        if not bn.training:
            return plain(x)
        tracked = bn.track_running_stats and bn.running_mean is not None
        if tracked:
            bn.num_batches_tracked.add_(1)
        m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        return _global_batch_norm(x, bn.weight, bn.bias, bn.running_mean if tracked else None,
                                  bn.running_var if tracked else None, m, bn.eps)

    return forward


def _graph_batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps, cudnn_enabled):
    if not training:
        return torch.ops.aten.batch_norm.default(x, weight, bias, running_mean, running_var, training, momentum,
                                                 eps, cudnn_enabled)
    return _global_batch_norm(x, weight, bias, running_mean, running_var, momentum, eps)


@contextmanager
def synced_observers(module: nn.Module):
    """While inside, every per-tensor fake-quant of a QAT graph observes the global batch, as one
    process would: its moving average and scale move with the extremes of all ranks' shares (one
    all-reduce each of min and max), then it fake-quantizes this rank's share with that scale.
    Both steps run the observer's own fused kernel, so the arithmetic is the one-process one.
    Per-channel fake-quants watch the weights, which every rank holds alike."""
    patched = []
    for m in module.modules():
        obs = getattr(m, "activation_post_process", None)
        if (hasattr(m, "observer_enabled") and hasattr(m, "fake_quant_enabled") and obs is not None
                and getattr(obs, "ch_axis", None) is None and "forward" not in m.__dict__):
            m.forward = _observing_globally(m, m.forward)
            patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


def _observing_globally(fq: nn.Module, plain):
    def forward(x: torch.Tensor) -> torch.Tensor:
        if not fq.training or int(fq.observer_enabled[0]) != 1 or x.numel() == 0:
            return plain(x)
        lo, hi = torch.aminmax(x.detach().float())
        dist.all_reduce(lo, op=dist.ReduceOp.MIN, group=_group(lo))
        dist.all_reduce(hi, op=dist.ReduceOp.MAX, group=_group(hi))
        fake_quant = fq.fake_quant_enabled.clone()
        fq.fake_quant_enabled.fill_(0)
        plain(torch.stack([lo, hi]).to(x.dtype))  # observe the global extremes: moving average, scale
        fq.fake_quant_enabled.copy_(fake_quant)
        fq.observer_enabled.fill_(0)
        try:
            return plain(x)  # fake-quantize with the scale just computed
        finally:
            fq.observer_enabled.fill_(1)

    return forward


def all_true(flag: bool, device: torch.device) -> bool:
    """True on every rank only if ``flag`` is true on every rank (so no rank raises alone and
    leaves the others waiting in a collective)."""
    t = torch.tensor([0.0 if flag else 1.0], device=device)
    dist.all_reduce(t, group=_group(t))
    return bool(t.item() == 0)


def sum_stats(total: float, seen: int, correct: int, parts: dict[str, float], device: torch.device):
    """Sum the epoch's loss and accuracy counters over ranks, so every rank logs the same history."""
    keys = sorted(parts)
    t = torch.tensor([total, float(seen), float(correct), *(parts[k] for k in keys)], dtype=torch.float64,
                     device=device)
    dist.all_reduce(t, group=_group(t))
    vals = t.tolist()
    return vals[0], int(vals[1]), int(vals[2]), dict(zip(keys, vals[3:]))
