"""Hardware targets: one TOML file per target in ``targets/`` (CPU/ISA, runtime, budgets, device).

A target file is checked strictly when it is loaded (:data:`SCHEMA`): an unknown key, a missing
one, a wrong type or a value out of range is an :class:`~edgedistill.errors.InputError` naming the
file and the key, so ``edgedistill build --target my.toml`` stops (exit 2) before any work.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from edgedistill.errors import InputError
from edgedistill.paths import targets_dir

# The build ships a .tflite and benchmarks it with LiteRT (edgedistill.bench): the one runtime.
RUNTIMES = ("litert",)
DELEGATES = ("xnnpack", "none", "gpu", "nnapi")
# gpu and nnapi run only through adb's benchmark_model; the local and ssh runners' LiteRT
# interpreter has xnnpack or none (edgedistill.bench.device_bench.TFLITE_DELEGATES).
ADB_ONLY_DELEGATES = ("gpu", "nnapi")
# The shipped model.tflite is fully integer; other precisions are exported beside it, not shipped.
PRECISIONS = ("int8",)
DEVICE_KINDS = ("local", "ssh", "adb")
# A target's name becomes a folder of the bundle root: a plain name, never a path.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Budgets:
    latency_ms: float
    model_size_kb: float
    peak_memory_mb: float


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    cpu: str
    isa: str
    abi: str
    runtime: str
    delegate: str
    threads: int
    precision: str
    budgets: Budgets
    device_kind: str  # "local" | "ssh" | "adb"
    default_device: str  # "" when none is configured
    path: Path

    def with_budgets(self, latency_ms: float | None = None, model_size_kb: float | None = None) -> "Target":
        """The same target with budgets overridden from the command line."""
        b = self.budgets
        return dataclasses.replace(
            self,
            budgets=Budgets(
                latency_ms if latency_ms is not None else b.latency_ms,
                model_size_kb if model_size_kb is not None else b.model_size_kb,
                b.peak_memory_mb,
            ),
        )

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        return d


def available_targets(directory: Path | None = None) -> list[str]:
    directory = directory or targets_dir()
    return sorted(p.stem for p in directory.glob("*.toml"))


# What a target file may hold: section -> key -> (check, required). "" is the top level.
_TABLE = "table"
SCHEMA: dict[str, dict[str, tuple[str, bool]]] = {
    "": {"name": ("name", False), "description": ("str", False), "hardware": (_TABLE, True),
         "runtime": (_TABLE, True), "budgets": (_TABLE, True), "device": (_TABLE, False)},
    "hardware": {"cpu": ("str", True), "isa": ("str", True), "abi": ("str", False)},
    "runtime": {"name": ("runtime", True), "delegate": ("delegate", False), "threads": ("threads", False),
                "precision": ("precision", False)},
    "budgets": {"latency_ms": ("budget", True), "model_size_kb": ("budget", True), "peak_memory_mb": ("budget", True)},
    "device": {"kind": ("device_kind", False), "default": ("str", False)},
}
_CHOICES = {"runtime": RUNTIMES, "delegate": DELEGATES, "precision": PRECISIONS, "device_kind": DEVICE_KINDS}


def _check_value(check: str, value) -> str:
    """What is wrong with ``value`` for ``check`` ("" when nothing)."""
    if check == _TABLE:
        return "" if isinstance(value, dict) else f"must be a [table], got {value!r}"
    if check == "threads":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"must be a whole number >= 1, got {value!r}"
        return ""
    if check == "budget":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            return f"must be a number > 0, got {value!r}"
        return ""
    if not isinstance(value, str):
        return f"must be a string, got {value!r}"
    if check == "name" and not NAME_PATTERN.match(value):
        return f"{value!r} is not a plain name (use letters, digits, '.', '_' and '-': it names the bundle folder)"
    if check in _CHOICES and value not in _CHOICES[check]:
        return f"{value!r} is not one of {', '.join(_CHOICES[check])}"
    return ""


def validate_target_dict(raw: dict) -> tuple[list[str], list[str]]:
    """(problems, hints) of a parsed target file; both empty when it is valid."""
    problems: list[str] = []
    hints: list[str] = []
    for section, keys in SCHEMA.items():
        table = raw if section == "" else raw.get(section, {})
        if not isinstance(table, dict):
            continue  # reported as the top level's type problem
        label = (lambda k: k) if section == "" else (lambda k, s=section: f"{s}.{k}")
        for key in table:
            if key not in keys:
                close = difflib.get_close_matches(key, list(keys), n=1)
                problems.append(f"unknown key {label(key)}" + (f" (did you mean {label(close[0])}?)" if close else ""))
                where = "at the top level" if section == "" else f"in [{section}]"
                hints.append(f"valid keys {where}: {', '.join(keys)}")
        for key, (check, required) in keys.items():
            if key not in table:
                if required and (section == "" or section in raw):
                    problems.append(f"missing {'section [' + key + ']' if check == _TABLE else 'key ' + label(key)}")
                continue
            bad = _check_value(check, table[key])
            if bad:
                problems.append(f"{label(key)} {bad}")
    runtime, device = raw.get("runtime"), raw.get("device", {})
    if isinstance(runtime, dict) and isinstance(device, dict):
        delegate, kind = runtime.get("delegate", "xnnpack"), device.get("kind", "local")
        if delegate in ADB_ONLY_DELEGATES and kind in DEVICE_KINDS and kind != "adb":
            problems.append(f"runtime.delegate {delegate!r} runs only on an adb device, and device.kind is {kind!r}")
            hints.append(f"use delegate xnnpack or none on a {kind} device, or set [device] kind = \"adb\"")
    return problems, list(dict.fromkeys(hints))


def load_target(name_or_path: str, directory: Path | None = None) -> Target:
    """Load a target by name (``targets/NAME.toml``) or by the path of a TOML file, checked strictly."""
    directory = directory or targets_dir()
    candidate = Path(name_or_path)
    path = candidate if candidate.suffix == ".toml" else directory / f"{name_or_path}.toml"
    if not path.is_file():
        names = ", ".join(available_targets(directory)) or "(none)"
        raise InputError(f"unknown target {name_or_path!r}: no file {path}", hint=f"valid targets: {names}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"target file {path} is not valid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"target file {path} cannot be read: {exc}") from exc
    problems, hints = validate_target_dict(raw)
    if problems:
        raise InputError(
            f"target file {path}: " + "; ".join(problems),
            hint="; ".join(hints) or f"see {directory / 'host.toml'} for the expected sections: hardware, runtime, "
                                    "budgets, device",
        )
    runtime, budgets, hw, device = raw["runtime"], raw["budgets"], raw["hardware"], raw.get("device", {})
    return Target(
        name=raw.get("name", path.stem),
        description=raw.get("description", ""),
        cpu=hw["cpu"],
        isa=hw["isa"],
        abi=hw.get("abi", ""),
        runtime=runtime["name"],
        delegate=runtime.get("delegate", "xnnpack"),
        threads=runtime.get("threads", 1),
        precision=runtime.get("precision", "int8"),
        budgets=Budgets(float(budgets["latency_ms"]), float(budgets["model_size_kb"]),
                        float(budgets["peak_memory_mb"])),
        device_kind=device.get("kind", "local"),
        default_device=device.get("default", ""),
        path=path,
    )
