"""Stage 8, bench: every artifact on the benchmark device, with the target's threads (on this host
at most its cores). Each measurement says what model it measured, so it can refit the latency model."""

from __future__ import annotations

from edgedistill.artifacts import Artifact
from edgedistill.backends import backend
from edgedistill.bench import LatencyStore, bench_model
from edgedistill.bench.measurement import MeasuredModel, Measurement
from edgedistill.bench.threads import bench_threads
from edgedistill.models import spec_to_dict
from edgedistill.stages.context import BuildContext


def bench_stage(ctx: BuildContext, artifacts: list[Artifact], spec) -> dict[str, Measurement]:
    cfg, target = ctx.cfg, ctx.target
    threads = bench_threads(target.threads, ctx.device)
    ctx.rep.stage("bench", f"{len(artifacts)} artifacts on {ctx.device} ({threads.describe()}, {cfg.bench_warmup} warm-up + "
                  f"{cfg.bench_runs} runs)")
    if threads.capped:
        ctx.rep.note(threads.note())
    store = LatencyStore()
    results: dict[str, Measurement] = {}
    for a in artifacts:
        m = bench_model(a.path, ctx.device, threads=threads.threads,
                        delegate=backend(a.spec.backend).bench_delegate(target.delegate),
                        warmup=cfg.bench_warmup, runs=cfg.bench_runs)
        m.model = MeasuredModel(spec=spec_to_dict(spec), input_shape=list(ctx.data.input_shape_nchw),
                                precision=a.spec.precision, target=target.name)
        store.append(m)
        results[a.name] = m
        ctx.rep.note(f"{a.name:<18} median {m.median_ms * 1000:8.1f} us  p90 {m.p90_ms * 1000:8.1f} us  ({m.runtime})")
    return results
