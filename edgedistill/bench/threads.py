"""How many threads a benchmark on this host may use.

A host benchmark that stands in for a 4-core phone on a 2-core CI machine would oversubscribe the
CPU with the target's 4 threads: the median then measures the scheduler (seen: 124 us median, 637 us
p90 for a model that runs in 30 us). On this host a benchmark uses at most the cores this process
may run on, and the build says so; on a device it uses the target's count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def host_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers and CI runners narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class BenchThreads:
    threads: int  # what the benchmark runs with
    requested: int  # what the target asks for

    @property
    def capped(self) -> bool:
        return self.threads < self.requested

    def describe(self) -> str:
        """``2 threads, capped from the target's 4 to this host's cores`` (or just ``4 threads``)."""
        return f"{self.threads} threads" + (
            f", capped from the target's {self.requested} to this host's cores" if self.capped else "")

    def note(self) -> str:
        if not self.capped:
            return ""
        return (f"benchmarked with {self.threads} threads, this host's cores, instead of the target's "
                f"{self.requested}: more threads than cores measures the scheduler, not the model")


def bench_threads(requested: int, device: str, cores: int | None = None) -> BenchThreads:
    """The thread count for benchmarking on ``device`` ("local" is this host)."""
    if device != "local":
        return BenchThreads(requested, requested)
    cores = host_cores() if cores is None else cores
    return BenchThreads(min(requested, cores), requested)
