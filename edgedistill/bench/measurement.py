"""One latency measurement of one model on one device, as stored and as printed."""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from typing import Any


@dataclass
class MeasuredModel:
    """What a measured file is, for refitting a latency model from the measurement: the zoo spec
    it was built from, its input shape (C, H, W), its precision and the target it stood for."""

    spec: dict
    input_shape: list[int]
    precision: str  # "int8" | "fp32"
    target: str = ""

    _KEYS = ("spec", "input_shape", "precision", "target")


@dataclass
class Measurement:
    """Everything needed to compare runs later and to refit the latency model from them.

    Latencies are in milliseconds over ``runs`` timed invokes after ``warmup`` untimed ones.
    ``extra`` holds what only some runners know (min/max, batch actually fed, notes such as an
    estimated p90 from benchmark_model's summary statistics).
    """

    model_file: str
    model_sha256: str
    model_bytes: int
    device: str
    device_info: dict
    is_host: bool
    runtime: str
    runtime_version: str
    threads: int
    delegate: str
    warmup: int
    runs: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    peak_memory_mb: float | None = None
    init_ms: float | None = None
    first_inference_ms: float | None = None
    timestamp: str = field(default_factory=lambda: utc_now())
    extra: dict = field(default_factory=dict)
    model: MeasuredModel | None = None  # set by the build and calibration, which know what they measured
    # On an emulated board (qemu-user): real aarch64 kernels, but the timing means nothing for
    # speed. Never stored, never fitted (LatencyStore.append, matching_measurements).
    emulated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Measurement":
        """Read a stored record; unknown keys (from a newer edgedistill) go to ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        unknown = {k: v for k, v in data.items() if k not in names}
        if unknown:
            known["extra"] = {**unknown, **dict(known.get("extra") or {})}
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in known and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ValueError(f"measurement record lacks {', '.join(missing)}")
        model = known.get("model")
        extra = dict(known.get("extra") or {})
        if model is None and "spec" in extra and "input_shape" in extra:
            # Records written before ``model`` existed kept the same facts in ``extra``.
            model = {k: extra.pop(k) for k in MeasuredModel._KEYS if k in extra}
            known["extra"] = extra
        if isinstance(model, dict):
            name = str(known["model_file"]).rsplit("/", 1)[-1]
            model.setdefault("precision", "int8" if "int8" in name or name == "model.tflite" else "fp32")
            known["model"] = MeasuredModel(**{k: model[k] for k in MeasuredModel._KEYS if k in model})
        return cls(**known)

    def device_label(self) -> str:
        """A short human name for the device: board model if it said one, else the spec."""
        model = self.device_info.get("model") or self.device_info.get("soc")
        return f"{self.device} ({model})" if model else self.device


@dataclass
class BenchRow:
    """One device's outcome in a multi-device run: a measurement, or the reason there is none."""

    device: str
    measurement: Measurement | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.measurement is not None

    def to_dict(self) -> dict[str, Any]:
        if self.measurement is not None:
            return {"ok": True, **self.measurement.to_dict()}
        return {"ok": False, "device": self.device, "error": self.error}


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
