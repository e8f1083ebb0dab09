"""Hardware targets: one TOML file per target in ``targets/`` (CPU/ISA, runtime, budgets, device)."""

from __future__ import annotations

import dataclasses
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

DELEGATES = ("xnnpack", "none", "gpu", "nnapi")
# The shipped model.tflite is fully integer; other precisions are exported beside it, not shipped.
PRECISIONS = ("int8",)
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


def load_target(name_or_path: str, directory: Path | None = None) -> Target:
    """Load a target by name (``targets/NAME.toml``) or by the path of a TOML file."""
    directory = directory or targets_dir()
    candidate = Path(name_or_path)
    path = candidate if candidate.suffix == ".toml" else directory / f"{name_or_path}.toml"
    if not path.is_file():
        names = ", ".join(available_targets(directory)) or "(none)"
        raise InputError(f"unknown target {name_or_path!r}: no file {path}", hint=f"valid targets: {names}")
    try:
        raw = tomllib.loads(path.read_text())
        runtime, budgets, hw, device = raw["runtime"], raw["budgets"], raw["hardware"], raw.get("device", {})
        target = Target(
            name=str(raw.get("name", path.stem)),
            description=str(raw.get("description", "")),
            cpu=str(hw["cpu"]),
            isa=str(hw["isa"]),
            abi=str(hw.get("abi", "")),
            runtime=str(runtime["name"]),
            delegate=str(runtime.get("delegate", "xnnpack")),
            threads=int(runtime.get("threads", 1)),
            precision=str(runtime.get("precision", "int8")),
            budgets=Budgets(
                float(budgets["latency_ms"]), float(budgets["model_size_kb"]), float(budgets["peak_memory_mb"])
            ),
            device_kind=str(device.get("kind", "local")),
            default_device=str(device.get("default", "")),
            path=path,
        )
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"target file {path} is not valid TOML: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"target file {path} is missing or has a bad field: {exc}",
            hint="see targets/host.toml for the expected sections: hardware, runtime, budgets, device",
        ) from exc
    if not NAME_PATTERN.match(target.name):
        raise InputError(
            f"target file {path}: name {target.name!r} is not a plain name",
            hint="use letters, digits, '.', '_' and '-' (it names the bundle folder)",
        )
    if target.delegate not in DELEGATES:
        raise InputError(f"target file {path}: delegate {target.delegate!r} is not one of {', '.join(DELEGATES)}")
    if target.precision not in PRECISIONS:
        raise InputError(f"target file {path}: precision {target.precision!r} is not one of {', '.join(PRECISIONS)}")
    if target.threads < 1:
        raise InputError(f"target file {path}: threads must be >= 1, got {target.threads}")
    return target
