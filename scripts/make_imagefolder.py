"""Write a synthetic but learnable ImageFolder dataset of digit PNGs (grayscale, or tinted RGB).

    python scripts/make_imagefolder.py OUT --n 5000 --size 28 [--seed 0] [--rgb]

Each image is one of scikit-learn's 1,797 real 8x8 handwritten digits (shipped with scikit-learn,
nothing is downloaded), upscaled to a random scale, rotated a little, placed at a random offset on a
SIZExSIZE canvas and given pixel noise; ``--rgb`` draws it in a random colour on a background of
another (the camera-image case: three channels, colour carries no label). The source digits are split first, so no test image comes
from a digit the train images were made from. Writes OUT/train/<digit>/*.png and OUT/test/<digit>/*.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def make_imagefolder(out: Path, n: int = 5000, size: int = 28, seed: int = 0,
                     test_fraction: float = 0.2, rgb: bool = False) -> dict[str, int]:
    """Write ``n`` images under ``out``; return the number written per split."""
    from sklearn.datasets import load_digits

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty; choose a new folder")
    if size < 8:
        raise SystemExit("--size must be at least 8 (the source digits are 8x8)")
    digits = load_digits()
    rng = np.random.default_rng(seed)
    pools = _split_sources(digits.target, test_fraction, rng)
    counts = {"test": int(round(n * test_fraction))}
    counts["train"] = n - counts["test"]
    for split, count in counts.items():
        for name in range(10):
            (out / split / str(name)).mkdir(parents=True, exist_ok=True)
        for k, source in enumerate(rng.choice(pools[split], size=count)):
            image = _augment(digits.images[source], size, rng)
            if rgb:
                image = _tint(image, rng)
            image.save(out / split / str(digits.target[source]) / f"{k:05d}.png")
    return counts


def _split_sources(labels: np.ndarray, test_fraction: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    train, test = [], []
    for cls in range(10):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_test = max(1, int(round(len(idx) * test_fraction)))
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return {"train": np.array(train), "test": np.array(test)}


def _augment(digit: np.ndarray, size: int, rng: np.random.Generator) -> Image.Image:
    glyph = Image.fromarray((digit * (255.0 / 16.0)).astype(np.uint8))
    side = int(rng.integers(round(size * 0.55), round(size * 0.85) + 1))
    glyph = glyph.resize((side, side), Image.Resampling.BICUBIC)
    glyph = glyph.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR)
    canvas = Image.new("L", (size, size), 0)
    canvas.paste(glyph, (int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))))
    pixels = np.asarray(canvas, dtype=np.float32) + rng.normal(0, 10, (size, size))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def _tint(gray: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The glyph's intensity mixes a random background colour into a random ink colour."""
    alpha = np.asarray(gray, dtype=np.float32)[..., None] / 255.0
    ink, paper = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    while np.abs(ink - paper).sum() < 150:  # keep the digit visible
        ink = rng.uniform(0, 255, 3)
    return Image.fromarray((alpha * ink + (1 - alpha) * paper).clip(0, 255).astype(np.uint8), "RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=5000, help="total images (train + test)")
    parser.add_argument("--size", type=int, default=28, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rgb", action="store_true", help="tinted RGB images instead of grayscale")
    args = parser.parse_args()
    counts = make_imagefolder(args.out, args.n, args.size, args.seed, rgb=args.rgb)
    print(f"wrote {counts['train']} train and {counts['test']} test images to {args.out}")


if __name__ == "__main__":
    main()
