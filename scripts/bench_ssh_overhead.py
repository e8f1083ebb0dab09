#!/usr/bin/env python3
"""How much does the ssh path distort a measurement? Same tiny model, same host, both paths.

Starts a throwaway sshd on 127.0.0.1 (edgedistill.bench.testing_sshd, as the tests do), then
benchmarks the model REPEATS times through ``local`` and through ``ssh://`` (the helper run by
this interpreter on the far side) and prints one table: per-inference median latency (the median
of the repeats' medians, and their min..max spread), the ssh/local ratio, and the wall time one
bench_model call takes end to end (connection, copy, interpreter start-up, cleanup).

    python scripts/bench_ssh_overhead.py [--model M.tflite] [--repeats 5] [--runs 200]

Timings on shared machines drift: compare the ratio within one run, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # bench_support: the tests' tiny model

from edgedistill.bench import bench_model  # noqa: E402
from edgedistill.bench.testing_sshd import LocalSshd  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="default: the tests' tiny conv net, built now")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()

    if args.model is None:
        from bench_support.models import tiny_models

        args.model = tiny_models().tflite_dynamic

    kw = {"threads": 1, "warmup": args.warmup, "runs": args.runs}
    with LocalSshd() as server:
        ssh_kw = {"ssh_config": str(server.client_config), "python": sys.executable}
        bench_model(args.model, server.spec, **kw, **ssh_kw)  # untimed: first-connection costs
        results: dict[str, list[tuple[float, float]]] = {"local": [], "ssh": []}
        for _ in range(args.repeats):  # interleaved, so drift hits both paths alike
            for path, device, extra in (("local", "local", {}), ("ssh", server.spec, ssh_kw)):
                start = time.perf_counter()
                m = bench_model(args.model, device, **kw, **extra)
                results[path].append((m.median_ms, time.perf_counter() - start))

    medians = {p: [r[0] for r in rs] for p, rs in results.items()}
    walls = {p: [r[1] for r in rs] for p, rs in results.items()}
    mid = {p: statistics.median(v) for p, v in medians.items()}
    print(f"model {args.model.name}, {args.repeats} repeats x {args.runs} timed runs (+{args.warmup} warm-up), "
          f"1 thread, XNNPACK, this host both ways\n")
    print("| path | median latency (us), median of repeats | spread of repeat medians (us) | "
          "spread / median | wall per bench_model call (ms) |")
    print("| --- | ---: | --- | ---: | ---: |")
    for p in ("local", "ssh"):
        lo, hi = min(medians[p]) * 1e3, max(medians[p]) * 1e3
        print(f"| {p} | {mid[p] * 1e3:.3f} | {lo:.3f} .. {hi:.3f} | {(hi - lo) / (mid[p] * 1e3):.0%} | "
              f"{statistics.median(walls[p]) * 1e3:.1f} |")
    ratios = [s / loc for s, loc in zip(medians["ssh"], medians["local"])]
    print(f"\nssh/local median-latency ratio: {mid['ssh'] / mid['local']:.2f} "
          f"(per repeat: {', '.join(f'{r:.2f}' for r in ratios)})")
    print(f"ssh/local wall-time ratio: {statistics.median(walls['ssh']) / statistics.median(walls['local']):.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
