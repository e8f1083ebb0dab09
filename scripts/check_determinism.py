"""Build the same tiny config twice from scratch and say whether the model files come out identical.

    python scripts/check_determinism.py [--shared-teacher] [--keep] [--epochs 2 ...] [--against REV]

``--against REV`` makes build a with the code of git revision REV (checked out into a temporary
worktree) and build b with this checkout: a refactor that promises unchanged behaviour passes when
both give byte-identical files.

Each build runs in its own process with a fresh run directory and, by default, a fresh teacher cache
(EDGEDISTILL_CACHE), so the teacher's training is checked too; ``--shared-teacher`` trains the
teacher once and lets the second build reuse it (isolates the student stages). Besides the bundle,
the intermediate files of the run directory are compared, which names the first stage whose output
differs. Exit status: 0 identical, 1 different.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUNDLE_FILES = ("model.tflite", "model_fp32.tflite", "model.onnx", "model_int8.onnx", "verification_sample.npz",
                "labels.txt", "config.json")  # config.json compared without its out/run_dir paths
# manifest.json and report.md carry measured latencies and are never byte-identical; not compared.
# In pipeline order, so the first differing row is the stage that broke determinism.
RUN_FILES = ("distill/student.safetensors", "quantize/reference_test_logits.npy", "quantize/model.tflite",
             "quantize/model_int8.onnx", "export/reference_test_logits.npy", "export/model_fp32.tflite",
             "export/model.onnx")


def sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    data = path.read_bytes()
    if path.name == "config.json":  # records --out and --run-dir, which differ by construction
        import json

        cfg = {k: v for k, v in json.loads(data).items() if k not in ("out", "run_dir")}
        data = json.dumps(cfg, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()


CHECKOUT = Path(__file__).resolve().parents[1]


def build(root: Path, cache: Path, args, code: Path = CHECKOUT) -> float:
    """One build in ``root`` with the edgedistill package (and targets, calibrations) of ``code``."""
    cmd = [sys.executable, "-m", "edgedistill.cli", "build", "--quiet", "--out", str(root / "dist"),
           "--run-dir", str(root / "run"), "--seed", str(args.seed), "--epochs", str(args.epochs),
           "--teacher-epochs", str(args.teacher_epochs), "--qat-epochs", str(args.qat_epochs), "--no-scratch",
           "--bench-runs", "3"]
    env = {**os.environ, "EDGEDISTILL_CACHE": str(cache), "PYTHONPATH": str(code),
           "EDGEDISTILL_TARGETS": str(code / "targets"), "EDGEDISTILL_CALIBRATION": str(code / "calibration")}
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=root)
    if proc.returncode != 0:
        sys.exit(f"build in {root} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def teacher_weights(cache: Path) -> Path | None:
    found = sorted(cache.glob("teachers/*/model.safetensors"))
    return found[0] if found else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared-teacher", action="store_true", help="the second build reuses the first's teacher")
    ap.add_argument("--keep", action="store_true", help="keep the temp folders (printed) for inspection")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--teacher-epochs", type=int, default=2)
    ap.add_argument("--qat-epochs", type=int, default=1)
    ap.add_argument("--against", metavar="REV", help="build a with git revision REV's code, b with this checkout")
    args = ap.parse_args()

    top = Path(tempfile.mkdtemp(prefix="edgedistill-determinism-"))
    roots = [top / "a", top / "b"]
    caches = [top / "cache-a", top / "cache-a" if args.shared_teacher else top / "cache-b"]
    codes = [CHECKOUT, CHECKOUT]
    if args.against:
        codes[0] = top / "code-a"
        subprocess.run(["git", "-C", str(CHECKOUT), "worktree", "add", "--detach", str(codes[0]), args.against],
                       check=True, capture_output=True)
    try:
        for i, (root, cache, code) in enumerate(zip(roots, caches, codes)):
            secs = build(root, cache, args, code)
            what = f"{args.against}'s code" if args.against and i == 0 else "this checkout"
            print(f"build {'ab'[i]}: {secs:.0f} s in {root} with {what} (teacher cache {cache})", flush=True)
    finally:
        if args.against:
            subprocess.run(["git", "-C", str(CHECKOUT), "worktree", "remove", "--force", str(codes[0])],
                           capture_output=True)

    rows = []
    if not args.shared_teacher:
        rows.append(("teacher cache model.safetensors", teacher_weights(caches[0]), teacher_weights(caches[1])))
    # Stage folders sit under the chosen student's name, e.g. run/resnet-w12-24-48-d1-1-1/distill.
    student_dirs = [next(iter(sorted((r / "run").glob("*/distill"))), r / "run" / "?").parent for r in roots]
    rows += [(f"run/{student_dirs[0].name}/{f}", student_dirs[0] / f, student_dirs[1] / f) for f in RUN_FILES]
    rows += [(f"bundle/{f}", roots[0] / "dist/android-arm64" / f, roots[1] / "dist/android-arm64" / f)
             for f in BUNDLE_FILES]

    width = max(len(r[0]) for r in rows)
    print(f"\n{'file':<{width}}  {'sha256 build a':<20}  {'sha256 build b':<20}  same")
    all_same, first_diff = True, None
    for name, pa, pb in rows:
        ha, hb = (sha256(pa) if pa else None), (sha256(pb) if pb else None)
        same = ha is not None and ha == hb
        all_same &= same
        if not same and first_diff is None:
            first_diff = name
        print(f"{name:<{width}}  {str(ha)[:20]:<20}  {str(hb)[:20]:<20}  {'yes' if same else 'NO'}")
    print("\nfull sha256 of the bundle's model files:")
    for f in BUNDLE_FILES[:4]:
        for label, root in zip("ab", roots):
            print(f"  {label} {f:<18} {sha256(root / 'dist/android-arm64' / f)}")
    print("\nresult: " + ("IDENTICAL: both builds produced byte-identical files" if all_same else
                          f"DIFFERENT: first difference at {first_diff}"))
    if args.keep:
        print(f"kept {top}")
    else:
        import shutil

        shutil.rmtree(top, ignore_errors=True)
    return 0 if all_same else 1


if __name__ == "__main__":
    sys.exit(main())
