"""Distillation benchmark on the built-in digits: every method side by side at one student.

    python scripts/bench_distill.py --seeds 3 --family cnn
    python scripts/bench_distill.py --seeds 3 --family vit --json

One teacher is trained per run (cached for every method and seed). Each method trains the same
student architecture from the same seeded initialisation, with the same epochs and the same
augmentation (the default recipe's), and reports test accuracy mean and std over seeds, wall
seconds per epoch (the whole ``train()`` call over its epochs, teacher caching included) and its
time relative to scratch. Seeds pair up (seed k of a method against seed k of scratch), so the
comparison with scratch is a paired mean difference with its standard error.

Each family has its own teacher and schedule (:data:`FAMILIES`): a transformer wants a lower
learning rate, a larger weight decay and more teacher epochs than the residual CNN.

Methods: scratch (labels only); kd (the default recipe's loss, ``DEFAULT_LOSS``); hint, attention
and rkd (the recipe's loss plus that term); combined (the recipe's loss plus all three); assistant
(the recipe's loss through a teacher-assistant chain, the assistant's training time included); and
on request (``--methods``) init: labels only, starting from the teacher's weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgedistill.data.digits import load_digits_dataset  # noqa: E402
from edgedistill.distill.assistant import distill_chain, plan_assistants, spec_parameters  # noqa: E402
from edgedistill.distill.losses import LossWeights  # noqa: E402
from edgedistill.distill.recipe import DEFAULT_INIT_FROM_TEACHER, apply_overrides, default_recipe  # noqa: E402
from edgedistill.distill.evaluation import evaluate  # noqa: E402
from edgedistill.distill.trainer import TrainConfig, train  # noqa: E402
from edgedistill.streams import stdout_to_stderr  # noqa: E402
from edgedistill.models.base import create_model  # noqa: E402
from edgedistill.models.init import init_student_from_teacher  # noqa: E402
from edgedistill.models.resnet import ResNetSpec  # noqa: E402
from edgedistill.models.vit import ViTSpec  # noqa: E402
from edgedistill.teacher.builtin import DEFAULT_TEACHER_TRAIN  # noqa: E402

METHODS = ["teacher", "scratch", "kd", "hint", "attention", "rkd", "combined", "assistant"]
# On request only (--methods): labels alone from the teacher's weights, to separate what the
# initialisation buys from what the distillation loss buys.
EXTRA_METHODS = ["init"]

# Per family: the teacher's TrainConfig and the student's overrides of the recipe's TrainConfig.
# The vit schedule was found by a sweep on digits (teacher 97.5-98.1% in 60 epochs).
FAMILIES = {
    "cnn": {"teacher": DEFAULT_TEACHER_TRAIN, "student": {}},
    "vit": {"teacher": TrainConfig(epochs=60, augment=True, seed=0, lr=1.5e-3, weight_decay=0.05),
            "student": {"lr": 3e-3, "weight_decay": 0.05}},
}


def family_specs(family: str, channels: int, classes: int, image: int):
    if family == "cnn":
        return ResNetSpec(channels, classes, (32, 64, 128), (2, 2, 2)), ResNetSpec(channels, classes, (8, 16, 32), (1, 1, 1))
    return (ViTSpec(channels, classes, image, 2, dim=128, depth=4, heads=4),
            ViTSpec(channels, classes, image, 2, dim=24, depth=2, heads=2))


def paired(accs: list[float], base: list[float]) -> tuple[float, float]:
    """Mean of the per-seed differences and its standard error."""
    diffs = [a - b for a, b in zip(accs, base)]
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    return statistics.mean(diffs), se


def method_weights(method: str, base: LossWeights) -> LossWeights | None:
    if method in ("scratch", "init"):
        return None
    extra = {"hint": {"hint": 1.0}, "attention": {"attention": 1.0}, "rkd": {"rkd": 1.0},
             "combined": {"hint": 1.0, "attention": 1.0, "rkd": 1.0}}.get(method, {})
    return dataclasses.replace(base, **extra)


def _run(args: argparse.Namespace, ap: argparse.ArgumentParser):
    """Train the teacher and every method's students; the rows, the student config and the data."""
    torch.set_num_threads(args.threads)
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    if not args.json:
        logging.basicConfig(level=logging.WARNING)

    data = load_digits_dataset()
    h, _, c = data.image_shape
    t_spec, s_spec = family_specs(args.family, c, data.num_classes, h)
    p_t, p_s = spec_parameters(t_spec), spec_parameters(s_spec)
    weights, overrides = default_recipe(p_t, p_s)
    fam = FAMILIES[args.family]
    cfg = apply_overrides(apply_overrides(TrainConfig(), overrides), fam["student"])
    if args.epochs is not None:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    if args.augment is not None:
        cfg = dataclasses.replace(cfg, augment=args.augment)
    t_cfg = fam["teacher"]
    if args.teacher_epochs is not None:
        t_cfg = dataclasses.replace(t_cfg, epochs=args.teacher_epochs)
    x_test, y_test = torch.from_numpy(data.batch("test", slice(None))), torch.from_numpy(data.test.labels)

    say(f"digits: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test, {torch.get_num_threads()} threads")
    say(f"teacher {t_spec.describe()}: {p_t:,} params | student {s_spec.describe()}: {p_s:,} params "
        f"| {p_t / p_s:.1f}x fewer")
    say(f"recipe: loss {weights.to_str()} | init from teacher {args.init_from_teacher} | epochs {cfg.epochs} "
        f"augment {cfg.augment} lr {cfg.lr} wd {cfg.weight_decay} "
        f"batch {cfg.batch_size} | {args.seeds} seeds")

    # The teacher: trained once, early-stopped on validation, shared by every method and seed.
    torch.manual_seed(0)
    teacher = create_model(t_spec)
    t0 = time.perf_counter()
    t_res = train(teacher, data, t_cfg, label="teacher")
    t_sec = (time.perf_counter() - t0) / t_cfg.epochs
    teacher.eval()
    t_acc = evaluate(teacher, x_test, y_test)
    say(f"teacher: test acc {t_acc:.4f} (best val epoch {t_res.best_epoch}), {t_sec:.2f} s/epoch")

    rows = [{"method": "teacher", "acc_mean": t_acc, "acc_std": 0.0, "sec_per_epoch": t_sec,
             "params": p_t, "seeds": 1, "accs": [t_acc]}]
    methods = [m for m in args.methods.split(",") if m]
    chain_specs = plan_assistants(t_spec, s_spec, 10.0) if "assistant" in methods else []
    if chain_specs:
        say("assistant chain: " + " -> ".join(
            [f"{t_spec.describe()} ({p_t:,})"] + [f"{a.describe()} ({spec_parameters(a):,})" for a in chain_specs]
            + [f"{s_spec.describe()} ({p_s:,})"]))
    for method in methods:
        if method not in METHODS[1:] + EXTRA_METHODS:
            ap.error(f"unknown method {method!r}; choose from {', '.join(METHODS[1:] + EXTRA_METHODS)}")
        accs, secs = [], []
        for seed in range(args.seeds):
            run_cfg = dataclasses.replace(cfg, seed=seed)
            torch.manual_seed(seed)
            student = create_model(s_spec)
            w = method_weights(method, weights)
            if (w is not None and method != "assistant" and args.init_from_teacher) or method == "init":
                # As the build does: the distilled student starts from the teacher's weights.
                init_student_from_teacher(teacher, student, sample=torch.from_numpy(data.batch("train", slice(0, 512))))
            t0 = time.perf_counter()
            if method == "assistant":
                distill_chain(teacher, student, data, run_cfg, w, assistants=chain_specs, label="assistant")
            else:
                train(student, data, run_cfg, teacher=teacher if w else None, weights=w, label=method)
            secs.append((time.perf_counter() - t0) / run_cfg.epochs)
            accs.append(evaluate(student, x_test, y_test))
        row = {"method": method, "acc_mean": statistics.mean(accs),
               "acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
               "sec_per_epoch": statistics.mean(secs), "params": p_s, "seeds": len(accs), "accs": accs}
        rows.append(row)
        say(f"  {method:10s} acc {row['acc_mean']:.4f} +- {row['acc_std']:.4f}  {row['sec_per_epoch']:.3f} s/epoch")

    scratch = next((r for r in rows if r["method"] == "scratch"), None)
    for r in rows:
        r["time_vs_scratch"] = r["sec_per_epoch"] / scratch["sec_per_epoch"] if scratch else None
        if scratch and r["method"] not in ("scratch", "teacher"):
            r["diff_vs_scratch"], r["diff_se"] = paired(r["accs"], scratch["accs"])
            r["seeds_won"] = sum(a > b for a, b in zip(r["accs"], scratch["accs"]))
    return rows, cfg, data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None, help="student epochs (default: the recipe's)")
    ap.add_argument("--teacher-epochs", type=int, default=None, help="default: the family's")
    ap.add_argument("--family", choices=["cnn", "vit"], default="cnn")
    ap.add_argument("--methods", default=",".join(METHODS[1:]), help="comma-separated subset")
    ap.add_argument("--json", action="store_true", help="print only a JSON list of rows")
    ap.add_argument("--init-from-teacher", action=argparse.BooleanOptionalAction, default=DEFAULT_INIT_FROM_TEACHER,
                    help="distilled students start from the teacher's weights [default: the recipe's]")
    ap.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                    help="shift augmentation for every student [default: the recipe's]")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads; 1 suits these tiny models and keeps timings steady on a shared box")
    args = ap.parse_args(argv)
    # Training and the libraries print as they go; with --json stdout carries the rows alone.
    with stdout_to_stderr(args.json):
        rows, cfg, data = _run(args, ap)
    scratch = next((r for r in rows if r["method"] == "scratch"), None)
    kd = next((r for r in rows if r["method"] == "kd"), None)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print()
    print(f"{'method':10s} {'params':>8s} {'test acc mean':>13s} {'std':>7s} {'vs scratch (paired SE)':>23s} "
          f"{'won':>5s} {'s/epoch':>8s} {'time/scratch':>12s}")
    for r in rows:
        diff = (f"{r['diff_vs_scratch'] * 100:+.2f}pp ({r['diff_se'] * 100:.2f})" if "diff_vs_scratch" in r
                else "")
        won = f"{r['seeds_won']}/{r['seeds']}" if "seeds_won" in r else ""
        ratio = f"{r['time_vs_scratch']:.2f}x" if r["time_vs_scratch"] is not None else ""
        print(f"{r['method']:10s} {r['params']:>8,d} {r['acc_mean'] * 100:12.2f}% {r['acc_std'] * 100:6.2f}% "
              f"{diff:>23s} {won:>5s} {r['sec_per_epoch']:8.3f} {ratio:>12s}")
    if kd and scratch:
        views = "all 9 shifted views" if cfg.augment else "one view (no augmentation)"
        print(f"\nKD/scratch time ratio: {kd['time_vs_scratch']:.2f}x (teacher outputs cached for {views}, "
              f"cache build included)")
        print(f"KD - scratch: {kd['diff_vs_scratch'] * 100:+.2f}pp, paired standard error "
              f"{kd['diff_se'] * 100:.2f}pp over {kd['seeds']} seeds, won {kd['seeds_won']}; "
              f"one test image is {100 / len(data.test):.2f}pp")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
