#!/usr/bin/env python3
"""What a build costs as images grow: wall time per stage, distillation throughput and peak RSS.

For each input size and image count, writes (once, cached) a tinted-RGB digits ImageFolder of that
size (``scripts/make_imagefolder.py --rgb``) and runs one short ``edgedistill build`` on it with
the built-in teacher, in a fresh run directory, under a memory cap. Prints one row per build:

- wall time of each stage, from the build's own progress lines (timestamped as they arrive);
- distillation throughput: training images x epochs / distill stage seconds (the teacher's
  outputs included: computed once and cached, or online with ``--augment``);
- each stage's own peak RSS: the process's high-water mark (``VmHWM``) is read as each stage
  begins and then reset (``5`` written to ``/proc/PID/clear_refs``), so each reading is the peak
  within the stage before (the last stage's, read when its output ends, is missing when the build
  has already exited);
- the build's peak RSS, the largest of those and of ``wait4``'s ``ru_maxrss`` (which the resets
  lower to the peak since the last one: the kernel keeps one high-water mark), and the stage in
  which it was reached; each stage's running peak up to its end;
- its exit code: a build that ran past the memory cap is reported as such, not retried.

    python scripts/bench_scale.py [--sizes 96 160 224] [--images 2000 20000] [--epochs 1]
                                  [--untrained-teacher] [--memory-cap-gb 20] [--json]

The teacher is trained for ``--teacher-epochs`` only, or not at all with ``--untrained-teacher``
(the built-in teacher's network at seeded random weights, passed as a ``--teacher`` factory), so it
(and the student) can be near chance and the build may stop at verification (exit 3): the figures
are about cost, not accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGE = re.compile(r"^\s{0,9}(data|teacher|select|distill|quantize|export|verify|bench|scratch|gates|bundle)\s")
TRAIN_COUNT = re.compile(r": (\d+) train / (\d+) val / (\d+) test")


def dataset(root: Path, size: int, n: int) -> Path:
    """A cached ImageFolder of ``n`` tinted digits at ``size`` px (written once, then reused)."""
    out = root / f"rgb{size}-{n}"
    if (out / ".complete").is_file():
        return out
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_imagefolder import make_imagefolder

    if out.exists():
        import shutil

        shutil.rmtree(out)
    make_imagefolder(out, n=n, size=size, seed=0, rgb=True)
    (out / ".complete").touch()
    return out


def run_build(data: Path, size: int, work: Path, args) -> dict:
    cmd = [sys.executable, "-m", "edgedistill", "build", "--data", str(data), "--target", args.target,
           "--epochs", str(args.epochs), "--qat-epochs", "1",
           "--no-scratch", "--bench-runs", "5", "--out", str(work / "dist"), "--run-dir", str(work / "run")]
    if args.untrained_teacher:
        cmd += ["--teacher", f"{untrained_teacher(work, data, size)}:build"]
    else:
        cmd += ["--teacher-epochs", str(args.teacher_epochs)]
    cap = int(args.memory_cap_gb * 2**30)

    def limit() -> None:  # in the child: allocations past the cap fail instead of swapping the machine
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    env = {**os.environ, "EDGEDISTILL_CACHE": str(work / "cache"), "EDGEDISTILL_PROGRESS_INTERVAL": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=limit)
    marks: list[tuple[str, float]] = []
    train = None
    tail: list[str] = []
    peaks: list[float] = []  # VmHWM (GB) as each stage began
    own: list[float] = []  # VmHWM since the previous mark's reset: the previous stage's own peak
    overall = 0.0
    for line in proc.stderr:
        now = time.perf_counter() - start
        m = STAGE.match(line)
        if m:
            marks.append((m.group(1), now))
            since = _high_water_gb(proc.pid)
            overall = max(overall, since)
            own.append(since)
            peaks.append(overall if since > 0 else 0.0)
            _reset_high_water(proc.pid)
        c = TRAIN_COUNT.search(line)
        if c and train is None:
            train = int(c.group(1))
        tail = (tail + [line.rstrip()])[-12:]
    own.append(_high_water_gb(proc.pid))  # the last stage's, while the process may still be there
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    stages: dict[str, float] = {}
    for (name, t0), (_, t1) in zip(marks, marks[1:] + [("end", wall)]):
        stages[name] = stages.get(name, 0.0) + t1 - t0
    final = max(usage.ru_maxrss / 2**20, overall, *(v for v in own if v > 0))
    # A mark read after the build exited (its last lines arrive late) is 0: the final peak stands in.
    ends, high = [], 0.0
    for after in peaks[1:] + [final]:
        high = max(high, after if after > 0 else final)
        ends.append(high)
    peak_by_stage: dict[str, float] = {}  # the high-water mark at the end of each stage
    for (name, _), after in zip(marks, ends):
        peak_by_stage[name] = round(max(peak_by_stage.get(name, 0.0), after), 2)
    stage_own_peak: dict[str, float | None] = {}  # each stage's peak within itself
    for (name, _), after in zip(marks, own[1:]):
        if after > 0:
            stage_own_peak[name] = round(max(stage_own_peak.get(name) or 0.0, after), 2)
        else:
            stage_own_peak.setdefault(name, None)
    rising = [n for i, (n, _) in enumerate(marks) if ends[i] > (ends[i - 1] if i else 0.0) + 0.05]
    out_of_memory = code != 0 and any("MemoryError" in l or "Cannot allocate memory" in l or "std::bad_alloc" in l
                                      for l in tail)
    distill = stages.get("distill")
    return {
        "exit_code": code, "wall_s": round(wall, 1), "stages_s": {k: round(v, 1) for k, v in stages.items()},
        "peak_rss_gb": round(final, 2), "peak_rss_gb_by_stage": peak_by_stage,
        "stage_own_peak_rss_gb": stage_own_peak,
        "peak_reached_in": rising[-1] if rising else None, "train_images": train,
        "distill_images_per_s": round(train * args.epochs / distill, 1) if train and distill else None,
        "out_of_memory": out_of_memory, "tail": tail if code != 0 else [],
    }


UNTRAINED_TEACHER = """\
import torch

from edgedistill.models.base import create_model
from edgedistill.teacher.builtin import default_teacher_spec


def build(num_classes: int = {classes}):
    torch.manual_seed(0)
    return create_model(default_teacher_spec((3, {size}, {size}), num_classes))
"""


def untrained_teacher(work: Path, data: Path, size: int) -> Path:
    """A teacher factory file: the built-in teacher's network for ``data``'s images, at seeded
    random weights (its training is most of a 20k-image build's wall time, and the cost of the
    stages after it does not depend on what the teacher knows)."""
    classes = len([d for d in (data / "train").iterdir() if d.is_dir()])
    path = work / "untrained_teacher.py"
    path.write_text(UNTRAINED_TEACHER.format(size=size, classes=classes))
    return path


def _high_water_gb(pid: int) -> float:
    """The process's peak resident set so far (``VmHWM``), 0 when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError):
        pass
    return 0.0


def _reset_high_water(pid: int) -> None:
    """Reset the process's ``VmHWM`` to its current resident set (proc(5), clear_refs "5")."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[96, 160, 224])
    ap.add_argument("--images", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--teacher-epochs", type=int, default=1)
    ap.add_argument("--untrained-teacher", action="store_true",
                    help="the built-in teacher's network at seeded random weights, as a --teacher factory: no teacher training")
    ap.add_argument("--target", default="android-arm64")
    ap.add_argument("--memory-cap-gb", type=float, default=20.0)
    ap.add_argument("--data-root", type=Path, default=Path.home() / ".cache" / "edgedistill" / "bench_scale")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from edgedistill.streams import stdout_to_stderr

    rows = []
    with stdout_to_stderr(args.json):  # with --json, stdout carries the JSON alone
        for size in args.sizes:
            for n in args.images:
                data = dataset(args.data_root, size, n)
                with tempfile.TemporaryDirectory(prefix="bench_scale.") as tmp:
                    r = run_build(data, size, Path(tmp), args)
                rows.append({"size": size, "images": n, **r})
                if not args.json:
                    print(f"{size:>4} px {n:>6} images: exit {r['exit_code']}"
                          f"{' (memory cap)' if r['out_of_memory'] else ''}, wall {r['wall_s']:.0f} s, peak RSS "
                          f"{r['peak_rss_gb']:.2f} GB (reached in {r['peak_reached_in']}), distill {r['distill_images_per_s'] or '-'} images/s; stages: "
                          + ", ".join(f"{k} {v:.0f}s" for k, v in r["stages_s"].items())
                          + "; own peak RSS per stage: "
                          + ", ".join(f"{k} {'-' if v is None else f'{v:.2f} GB'}"
                                      for k, v in r["stage_own_peak_rss_gb"].items()), flush=True)
                    for line in r["tail"]:
                        print(f"      {line}")
    if args.json:
        print(json.dumps({"epochs": args.epochs, "memory_cap_gb": args.memory_cap_gb, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
