"""Multi-process training with ``torchrun`` and DistributedDataParallel.

``torchrun`` starts the processes and sets RANK, WORLD_SIZE and LOCAL_RANK; nothing here spawns or
supervises a process. :func:`edgedistill.distill.trainer.train` calls :func:`init_from_env`, so
the same call trains in one process or in many. The helpers below are what the loop needs from the
process group: the shard of a seeded permutation (the DistributedSampler rule), the DDP wrapper,
and broadcasts that keep every rank's weights identical.

Run it (two processes on CPU, gloo; on GPUs nccl with one device per process)::

    torchrun --standalone --nproc_per_node 2 -m edgedistill.distill.ddp --epochs 2
"""

from __future__ import annotations

import argparse
import os
import sys

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


# ---------------------------------------------------------------------------------------------
# Entry point


def main(argv: list[str] | None = None) -> int:
    # Imported here: the trainer imports this module for the helpers above.
    from edgedistill.data.digits import load_digits_dataset
    from edgedistill.distill.trainer import TrainConfig, evaluate, train
    from edgedistill.models import count_parameters, create_model
    from edgedistill.models.resnet import ResNetSpec

    ap = argparse.ArgumentParser(
        prog="python -m edgedistill.distill.ddp",
        description="Train a small residual student on the built-in digits; run it under torchrun.",
    )
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64, help="per process")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--widths", default="8,16,32")
    ap.add_argument("--depths", default="1,1,1")
    ap.add_argument("--augment", action="store_true")
    ap.add_argument("--checkpoint-dir", default=None)
    args = ap.parse_args(argv)

    init_from_env()
    try:
        data = load_digits_dataset()
        spec = ResNetSpec(data.image_shape[2], data.num_classes,
                          tuple(int(w) for w in args.widths.split(",")),
                          tuple(int(d) for d in args.depths.split(",")))
        torch.manual_seed(args.seed)
        model = create_model(spec)
        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                          augment=args.augment)
        from pathlib import Path

        result = train(model, data, cfg, label="ddp",
                       checkpoint_dir=Path(args.checkpoint_dir) if args.checkpoint_dir else None)
        acc = evaluate(model, torch.from_numpy(data.inputs("test")), torch.from_numpy(data.test.labels))
        # Fingerprint of the final weights: equal on every rank.
        checksum = float(sum(p.double().sum() for p in model.state_dict().values() if p.is_floating_point()))
        if world_size() > 1:
            sums = [None] * world_size()
            dist.all_gather_object(sums, checksum)
            same = all(s == sums[0] for s in sums)
        else:
            same = True
        if rank() == 0:
            print(f"world_size {world_size()} device {result.device} params {count_parameters(model)} "
                  f"epochs {len(result.history)} sec/epoch {result.sec_per_epoch:.3f}")
            print(f"ranks_identical {same}")
            print(f"test_accuracy {acc:.4f}")
            sys.stdout.flush()
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
