"""Read the numbers out of TFLite's ``benchmark_model`` log (a pure function, no device needed).

The lines we read, as different versions print them (each may carry an ``INFO: `` prefix, or a
logcat prefix such as ``07-08 15:34:26.202 I/tflite  ( 5395): ``):

    count=50 first=74456 curr=74516 min=73909 max=75323 avg=74481.6 std=268
    count=337 first=2881 curr=2703 min=2605 max=20356 avg=2942.27 std=1190 p5=2647 median=2781 p95=3169
    Inference timings in us: Init: 18738, First inference: 140706, Warmup (avg): 85791.2, Inference (avg): 74481.6
    Peak memory footprint (MB): init=6.44141 overall=64.8633                      (older: peak RSS)
    Memory footprint delta from the start of the tool (MB): init=2.43 overall=8.67  (newer: a delta)
    Overall peak memory footprint (MB) via periodic monitoring: 13.1797             (newer, when asked)

Averages may be printed in C++ ``%g`` style (``2.71985e+06``). The warm-up run's ``count=`` line
comes first, the timed runs' last; a single run prints only ``count=1 curr=N``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_TIMINGS = re.compile(
    rf"Inference timings in us:\s*Init:\s*(?P<init>{_NUM}),\s*First inference:\s*(?P<first>{_NUM}),"
    rf"\s*Warmup \(avg\):\s*(?P<warmup>{_NUM}),\s*Inference \(avg\):\s*(?P<avg>{_NUM})"
)
_STATS = re.compile(rf"\bcount=(?P<count>\d+)(?P<rest>(?:\s+\w+={_NUM})*)")
_STAT_FIELD = re.compile(rf"(\w+)=({_NUM})")
_OLD_MEMORY = re.compile(rf"Peak memory footprint \(MB\):\s*init=(?P<init>{_NUM})\s+overall=(?P<overall>{_NUM})")
_DELTA_MEMORY = re.compile(
    rf"Memory footprint delta from the start of the tool \(MB\):\s*init=(?P<init>{_NUM})\s+overall=(?P<overall>{_NUM})"
)
_PEAK_MONITOR = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring:\s*(?P<peak>{_NUM})")
_ERROR_LINE = re.compile(r"^(?:.*?\b)?(?:ERROR|E/tflite|Failed|failed)\b.*$", re.MULTILINE)


class BenchmarkModelOutputError(ValueError):
    """The output holds no inference timings: the run failed, and ``str()`` quotes why."""


@dataclass(frozen=True)
class BenchmarkModelResult:
    """benchmark_model's figures in its own units (microseconds, MB)."""

    init_us: float
    first_inference_us: float
    warmup_avg_us: float
    inference_avg_us: float
    count: int | None = None  # timed runs actually done (min_secs can add runs)
    min_us: float | None = None
    max_us: float | None = None
    std_us: float | None = None
    median_us: float | None = None  # newer versions only
    p5_us: float | None = None
    p95_us: float | None = None
    warmup_count: int | None = None
    # Memory: each version reports a different quantity, so keep them apart.
    peak_rss_mb: float | None = None  # older "Peak memory footprint": max RSS at the end
    init_peak_rss_mb: float | None = None
    memory_delta_mb: float | None = None  # newer "delta from the start of the tool", overall
    init_memory_delta_mb: float | None = None
    peak_monitored_mb: float | None = None  # newer periodic monitoring (--report_peak_memory_footprint)

    @property
    def peak_memory_mb(self) -> float | None:
        """The best peak figure this version gives: monitored peak, else max RSS; a delta is no peak."""
        return self.peak_monitored_mb if self.peak_monitored_mb is not None else self.peak_rss_mb


def parse_benchmark_model_output(text: str) -> BenchmarkModelResult:
    timings = list(_TIMINGS.finditer(text))
    if not timings:
        errors = [line.strip() for line in _ERROR_LINE.findall(text)]
        # The first error is usually the cause, the last one what gave up: keep both ends.
        shown = errors if len(errors) <= 4 else [*errors[:2], "...", *errors[-2:]]
        tail = " | ".join(shown) if errors else " | ".join(text.strip().splitlines()[-3:])
        raise BenchmarkModelOutputError(f"benchmark_model printed no inference timings: {tail or 'no output'}")
    t = timings[-1]

    stats = [_stat_fields(m) for m in _STATS.finditer(text[: t.start()])]
    timed = stats[-1] if stats else {}
    warm = stats[-2] if len(stats) >= 2 else {}

    old = _last(_OLD_MEMORY, text)
    delta = _last(_DELTA_MEMORY, text)
    peak = _last(_PEAK_MONITOR, text)
    return BenchmarkModelResult(
        init_us=float(t["init"]),
        first_inference_us=float(t["first"]),
        warmup_avg_us=float(t["warmup"]),
        inference_avg_us=float(t["avg"]),
        count=int(timed["count"]) if "count" in timed else None,
        min_us=timed.get("min"),
        max_us=timed.get("max"),
        std_us=timed.get("std"),
        median_us=timed.get("median"),
        p5_us=timed.get("p5"),
        p95_us=timed.get("p95"),
        warmup_count=int(warm["count"]) if "count" in warm else None,
        peak_rss_mb=float(old["overall"]) if old else None,
        init_peak_rss_mb=float(old["init"]) if old else None,
        memory_delta_mb=float(delta["overall"]) if delta else None,
        init_memory_delta_mb=float(delta["init"]) if delta else None,
        peak_monitored_mb=float(peak["peak"]) if peak else None,
    )


def _stat_fields(match: re.Match) -> dict[str, float]:
    fields = {"count": float(match["count"])}
    fields.update((k, float(v)) for k, v in _STAT_FIELD.findall(match["rest"]))
    return fields


def _last(pattern: re.Pattern, text: str) -> re.Match | None:
    found = list(pattern.finditer(text))
    return found[-1] if found else None
