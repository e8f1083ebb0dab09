"""Bring-your-own measurement: a 28x28 grayscale ImageFolder set made here (no downloads) and a
teacher defined in a file outside the package, through the whole build.

    python scripts/bench_byo.py [--n 5000] [--teacher-epochs 8] [--workdir DIR] [--json]

1. writes an ImageFolder tree of N 28x28 PNGs (scripts/make_imagefolder.py);
2. trains scripts/example_teacher.py:build on it and saves its weights as .safetensors (what a user
   brings);
3. runs `edgedistill build --data DIR --teacher scripts/example_teacher.py:build --weights W` and
   prints the build's wall time and each artifact's accuracy from the manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--teacher-epochs", type=int, default=8)
    parser.add_argument("--target", default="android-arm64")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("build_args", nargs="*", help="extra arguments for edgedistill build (after --)")
    args = parser.parse_args()
    # The build and the libraries print as they go; with --json stdout carries the summary alone.
    from edgedistill.streams import stdout_to_stderr

    with stdout_to_stderr(args.json):
        import torch
        from safetensors.torch import save_file

        from edgedistill.data.load import load_dataset
        from edgedistill.distill.evaluation import evaluate_split
        from edgedistill.distill.trainer import TrainConfig, train
        from example_teacher import build as build_teacher
        from make_imagefolder import make_imagefolder

        work = args.workdir or Path(tempfile.mkdtemp(prefix="edgedistill-byo-"))
        data_dir = work / "digits28"
        if not data_dir.exists():
            make_imagefolder(data_dir, n=args.n, size=28, seed=0)
        data = load_dataset(data_dir)
        print(f"data: {data_dir} ({len(data.train)} train / {len(data.val)} val / {len(data.test)} test)", file=sys.stderr)

        weights = work / "teacher.safetensors"
        if not weights.exists():
            torch.manual_seed(0)
            teacher = build_teacher()
            t0 = time.perf_counter()
            train(teacher, data, TrainConfig(epochs=args.teacher_epochs, augment=False))
            acc = evaluate_split(teacher, data, "test")
            save_file(teacher.state_dict(), str(weights))
            print(f"teacher trained in {time.perf_counter() - t0:.0f}s, test accuracy {acc:.4f}", file=sys.stderr)

        cmd = [sys.executable, "-m", "edgedistill.cli", "build", "--target", args.target,
               "--data", str(data_dir), "--teacher", f"{HERE / 'example_teacher.py'}:build", "--weights", str(weights),
               "--out", str(work / "dist"), "--run-dir", str(work / "run"), *args.build_args]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env={**os.environ, "EDGEDISTILL_CACHE": str(work / "cache")})
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(f"build failed with exit code {proc.returncode}", file=sys.stderr)
            return proc.returncode
        manifest = json.loads((work / "dist" / args.target / "manifest.json").read_text())
        rows = [{"artifact": name, "accuracy": a["accuracy"], "agreement": a["agreement"],
                 "median_ms": a["latency"]["median_ms"]} for name, a in manifest["artifacts"].items()]
        summary = {"build_wall_s": round(wall, 1), "images": len(data.train) + len(data.val) + len(data.test),
                   "teacher_params": manifest["teacher"]["params"], "teacher_test_accuracy": manifest["teacher"]["test_accuracy"],
                   "student_params": manifest["student"]["params"], "artifacts": rows}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"build wall time: {wall:.1f} s on {summary['images']} images (28x28 grayscale ImageFolder)")
    print(f"teacher (scripts/example_teacher.py): {summary['teacher_params']:,} params, "
          f"test accuracy {summary['teacher_test_accuracy']:.4f}; student {summary['student_params']:,} params")
    print(f"{'artifact':<20}{'accuracy':>10}{'agreement':>11}{'median us':>11}")
    for r in rows:
        print(f"{r['artifact']:<20}{r['accuracy']:>10.4f}{r['agreement']:>11.4f}{r['median_ms'] * 1000:>11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
