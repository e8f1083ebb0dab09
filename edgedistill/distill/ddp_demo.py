"""Train a small residual student on the built-in digits from labels alone, in one process or
many: the smallest end-to-end check of :mod:`edgedistill.distill.ddp`.

Run it (two processes on CPU, gloo; on GPUs nccl with one device per process)::

    torchrun --standalone --nproc_per_node 2 -m edgedistill.distill.ddp_demo --epochs 2

Rank 0 prints ``world_size ...``, ``ranks_identical True|False`` (a checksum of the final weights
gathered from every rank) and ``test_accuracy ...``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from edgedistill.data.digits import load_digits_dataset
from edgedistill.distill import ddp
from edgedistill.distill.trainer import TrainConfig, evaluate, train
from edgedistill.models import count_parameters, create_model
from edgedistill.models.resnet import ResNetSpec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m edgedistill.distill.ddp_demo",
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

    ddp.init_from_env()
    try:
        data = load_digits_dataset()
        spec = ResNetSpec(data.image_shape[2], data.num_classes,
                          tuple(int(w) for w in args.widths.split(",")),
                          tuple(int(d) for d in args.depths.split(",")))
        torch.manual_seed(args.seed)
        model = create_model(spec)
        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                          augment=args.augment)
        result = train(model, data, cfg, label="ddp",
                       checkpoint_dir=Path(args.checkpoint_dir) if args.checkpoint_dir else None)
        acc = evaluate(model, torch.from_numpy(data.inputs("test")), torch.from_numpy(data.test.labels))
        # Fingerprint of the final weights: equal on every rank.
        checksum = float(sum(p.double().sum() for p in model.state_dict().values() if p.is_floating_point()))
        if ddp.world_size() > 1:
            sums = [None] * ddp.world_size()
            dist.all_gather_object(sums, checksum)
            same = all(s == sums[0] for s in sums)
        else:
            same = True
        if ddp.rank() == 0:
            print(f"world_size {ddp.world_size()} device {result.device} params {count_parameters(model)} "
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
