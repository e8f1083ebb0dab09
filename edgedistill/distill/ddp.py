"""Multi-process training with ``torchrun`` and DistributedDataParallel.

``torchrun`` starts the processes and sets RANK, WORLD_SIZE and LOCAL_RANK; nothing here spawns or
supervises a process. :func:`edgedistill.distill.trainer.train` calls :func:`init_from_env`, so
the same call trains in one process or in many. The helpers below are what the loop needs from the
process group: the shard of a seeded permutation (the DistributedSampler rule), the DDP wrapper,
and broadcasts that keep every rank's weights identical.

A label-only demo of it all is :mod:`edgedistill.distill.ddp_demo`. Nothing here imports the
trainer: it imports this module.
"""

from __future__ import annotations

import os

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
    dist.init_process_group(backend=backend)
    return True


def shard(
    perm: torch.Tensor, views: torch.Tensor | None, rank: int, world: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """This rank's share of a permutation, as ``DistributedSampler`` deals it: padded with its own
    head to a multiple of ``world``, then every ``world``-th item from ``rank``. Every rank gets
    the same count, so every rank takes the same number of steps (DDP needs that)."""
    n = len(perm)
    total = -(-n // world) * world
    if total > n:
        pad = torch.arange(total - n) % max(1, n)
        perm = torch.cat([perm, perm[pad]])
        views = torch.cat([views, views[pad]]) if views is not None else None
    take = slice(rank, total, world)
    return perm[take], (views[take] if views is not None else None)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index or 0], output_device=device.index or 0)
    return DistributedDataParallel(model)


def broadcast_state(module: nn.Module, src: int = 0) -> None:
    """Copy every parameter and buffer of ``module`` from rank ``src`` to all ranks."""
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """BatchNorm running statistics drift apart per shard; take rank ``src``'s."""
    with torch.no_grad():
        for b in module.buffers():
            dist.broadcast(b.data, src)


def average_gradients(module: nn.Module) -> None:
    world = dist.get_world_size()
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


def all_true(flag: bool, device: torch.device) -> bool:
    """True on every rank only if ``flag`` is true on every rank (so no rank raises alone and
    leaves the others waiting in a collective)."""
    t = torch.tensor([0.0 if flag else 1.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() == 0)


def sum_stats(total: float, seen: int, correct: int, parts: dict[str, float], device: torch.device):
    """Sum the epoch's loss and accuracy counters over ranks, so every rank logs the same history."""
    keys = sorted(parts)
    t = torch.tensor([total, float(seen), float(correct), *(parts[k] for k in keys)], dtype=torch.float64,
                     device=device)
    dist.all_reduce(t)
    vals = t.tolist()
    return vals[0], int(vals[1]), int(vals[2]), dict(zip(keys, vals[3:]))
