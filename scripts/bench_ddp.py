#!/usr/bin/env python3
"""Wall time of the same small build on 1 and N processes (``edgedistill build --nproc N``).

Runs the built-in digits build for --target at --epochs, once per (processes, BatchNorm mode) and
repeat, interleaved so that drift on a shared machine hits every configuration alike; each in a
fresh run directory (nothing reused) over one teacher cache that an untimed first build fills.
Prints one table: the median wall time of the whole build and of its training stages (from the
bundle's report.md), the ratio to one process measured in this run, and the int8 accuracy.

    python scripts/bench_ddp.py [--nproc 1 2] [--epochs 20] [--repeats 2] [--target rpi4]

On a CPU the processes share its cores (gloo, OMP_NUM_THREADS = cores / N); on GPUs each takes one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("teacher", "distill", "quantize", "scratch")


def build(workdir: Path, env: dict, args, nproc: int, sync: bool) -> dict:
    workdir.mkdir(parents=True)
    cmd = [sys.executable, "-m", "edgedistill", "build", "--target", args.target, "--epochs", str(args.epochs),
           "--teacher-epochs", str(args.teacher_epochs), "--qat-epochs", "1", "--bench-runs", "5",
           "--nproc", str(nproc), "--sync-batchnorm" if sync else "--no-sync-batchnorm"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"build failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    bundle = workdir / "dist" / args.target
    manifest = json.loads((bundle / "manifest.json").read_text())
    line = next(l for l in (bundle / "report.md").read_text().splitlines() if l.startswith("Wall time per stage"))
    stages = {k: float(v) for k, v in re.findall(r"(\w+) ([\d.]+)s", line)}
    return {"wall": wall, "stages": stages, "int8": manifest["artifacts"]["model.tflite"]["accuracy"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--teacher-epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--target", default="rpi4")
    ap.add_argument("--also-unsynced", action="store_true", help="also N>1 processes with --no-sync-batchnorm")
    args = ap.parse_args()

    configs = [(n, True) for n in args.nproc] + ([(n, False) for n in args.nproc if n > 1] if args.also_unsynced else [])
    root = Path(tempfile.mkdtemp(prefix="bench_ddp."))
    env = {**os.environ, "EDGEDISTILL_CACHE": str(root / "cache"),
           "EDGEDISTILL_LATENCY_STORE": str(root / "cache" / "latency.jsonl")}
    build(root / "warm", env, args, 1, True)  # the teacher, trained once and cached for every run below
    runs: dict[tuple[int, bool], list[dict]] = {c: [] for c in configs}
    for r in range(args.repeats):
        for n, sync in configs:
            runs[(n, sync)].append(build(root / f"r{r}-n{n}-{'sync' if sync else 'local'}", env, args, n, sync))

    base = statistics.median(x["wall"] for x in runs[configs[0]])
    print(f"digits build for {args.target}, {args.epochs} distillation epochs, {args.repeats} repeat(s) each, "
          f"{len(os.sched_getaffinity(0))} CPU core(s) here; medians\n")
    print("| processes | BatchNorm | build wall (s) | ratio to 1st row | " + " | ".join(f"{s} (s)" for s in STAGES)
          + " | int8 accuracy |")
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in STAGES) + " | --- |")
    for (n, sync), xs in runs.items():
        wall = statistics.median(x["wall"] for x in xs)
        stages = [statistics.median(x["stages"].get(s, 0.0) for x in xs) for s in STAGES]
        accs = ", ".join(f"{100 * x['int8']:.2f}%" for x in xs)
        print(f"| {n} | {'global batch' if sync else 'per process'} | {wall:.1f} | {wall / base:.2f} | "
              + " | ".join(f"{v:.1f}" for v in stages) + f" | {accs} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
