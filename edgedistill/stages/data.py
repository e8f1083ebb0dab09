"""Stage 1, data: the built-in digits or the user's ``--data`` (ImageFolder tree or .npz)."""

from __future__ import annotations

from pathlib import Path

from edgedistill.config import BuildConfig
from edgedistill.data.dataset import ImageDataset
from edgedistill.errors import InputError
from edgedistill.progress import Reporter


def load_data(cfg: BuildConfig, rep: Reporter) -> ImageDataset:
    rep.stage("data", "loading" + (f" {cfg.data}" if cfg.data else " the built-in digits (scikit-learn)"))
    data = _load(cfg)
    rep.note(f"{data.name}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test, "
             f"{data.num_classes} classes, images {data.image_shape}")
    for line in data.load_report.lines():
        rep.warn(line)
    return data


def _load(cfg: BuildConfig) -> ImageDataset:
    if not cfg.data:
        ignored = [flag for flag, value in (("--mean", cfg.mean), ("--std", cfg.std), ("--image-size", cfg.image_size),
                                            ("--strict", cfg.strict), ("--channels", cfg.channels)) if value]
        if ignored:
            raise InputError(f"{', '.join(ignored)} only apply to --data; the built-in digits have fixed preprocessing",
                             hint="give --data PATH, or drop those options")
        from edgedistill.data.digits import load_digits_dataset

        return load_digits_dataset(seed=cfg.seed)
    from edgedistill.data.load import load_dataset
    from edgedistill.paths import cache_dir

    return load_dataset(
        Path(cfg.data),
        mean=cfg.mean or None,
        std=cfg.std or None,
        image_size=tuple(cfg.image_size) if cfg.image_size else None,
        channels=cfg.channels,
        split_seed=cfg.seed,
        strict=cfg.strict,
        store=cache_dir() / "decoded" if cfg.decoded_cache else None,
    )
