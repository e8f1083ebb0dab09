"""The resolved configuration of one build: defaults < edgedistill.toml (or --config) < flags.

The resolved config is saved in the bundle, so a build can be reproduced from its manifest.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from edgedistill.errors import InputError

@dataclass
class BuildConfig:
    target: str = "android-arm64"
    out: str = "dist"
    run_dir: str = ""  # default: runs/<target>
    seed: int = 0
    # data and teacher (issue 6): empty means the built-in default
    data: str = ""
    teacher: str = ""
    weights: str = ""
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    image_size: list[int] = field(default_factory=list)
    channels: int | None = None  # 1 or 3 converts the images to grayscale / RGB; None keeps what they are
    strict: bool = False
    decoded_cache: bool = True  # an ImageFolder's decoded images on disk (cache folder), not in memory
    # training
    loss: str = ""  # empty: the default recipe's loss (edgedistill/distill/recipe.py)
    teacher_epochs: int = 30
    epochs: int = 40
    qat_epochs: int = 4
    batch_size: int = 64
    lr: float = 3e-3
    augment: bool | None = None  # None: the default recipe's choice
    flip: bool = True  # with augment above 32 px: mirror half the crops
    assistant_ratio: float = 50.0  # teacher/student parameter ratio above which assistants bridge the gap
    init_from_teacher: bool = True  # start the student from the teacher's weights where shapes allow
    scratch_baseline: bool = True
    device: str = "auto"
    sync_batchnorm: bool = True  # under torchrun: BatchNorm over the global batch, as one process
    arm_board: str = ""  # ARM verification: "" the target's emulated board when up, "off", or a device
    arm_tolerance_steps: int = 2  # largest aarch64-vs-x86 output difference, in quantization steps
    min_compression: float = 10.0  # student must have this many times fewer parameters
    # budgets override the target's
    max_latency_ms: float | None = None
    max_size_kb: float | None = None
    max_rounds: int = 3  # measure -> refit -> re-choose rounds when the measured latency misses the budget
    # quality gates on the measured result (fractions for accuracy): a failure exits 4, no bundle
    gate_min_accuracy: float | None = None
    gate_max_accuracy_drop: float | None = None
    gate_drop_reference: str = "fp32"  # "fp32" (the distilled student) | "teacher"
    gate_max_latency_ms: float | None = None
    gate_max_size_kb: float | None = None
    gate_min_teacher_accuracy: float | None = None  # on the validation split, before any training
    # benchmarking
    bench_device: str = ""  # default: the target's default device, else this host
    bench_warmup: int = 20
    bench_runs: int = 100

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / Path(self.target).stem


_FIELDS = {f.name: f for f in dataclasses.fields(BuildConfig)}

# A config file may use the flags' own names (``distill = "kd=1"``, ``min-accuracy = 0.9``): each
# alias maps onto the field the flag sets. Hyphens and underscores are interchangeable.
FLAG_ALIASES = {
    "distill": "loss",
    "scratch": "scratch_baseline",
    "min_accuracy": "gate_min_accuracy",
    "max_accuracy_drop": "gate_max_accuracy_drop",
    "drop_reference": "gate_drop_reference",
    "min_teacher_accuracy": "gate_min_teacher_accuracy",
}
# A budget flag is also a gate on the measured result; so is the same key in a config file.
BUDGET_GATES = {"max_latency_ms": "gate_max_latency_ms", "max_size_kb": "gate_max_size_kb"}


def canonical_keys(section: dict, where: str) -> dict:
    """Map flag-style keys onto field names; two spellings of one setting are an error."""
    out: dict = {}
    for key, value in section.items():
        name = str(key).replace("-", "_")
        name = FLAG_ALIASES.get(name, name)
        if name in out:
            raise InputError(f"{where}: {key!r} sets {name} a second time")
        out[name] = value
    return out


def load_config_file(path: Path) -> dict:
    """Read ``[build]`` (or top-level keys) of a TOML file; unknown keys are an error, not ignored."""
    if not path.is_file():
        raise InputError(f"config file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"config file {path} is not valid TOML: {exc}") from exc
    section = raw.get("build", raw)
    if not isinstance(section, dict):
        raise InputError(f"config file {path}: [build] must be a table of settings, got {section!r}")
    spelled = {FLAG_ALIASES.get(str(k).replace("-", "_"), str(k).replace("-", "_")): str(k) for k in section}
    section = canonical_keys(section, f"config file {path}")
    unknown = sorted(set(section) - set(_FIELDS))
    if unknown:
        raise InputError(
            f"config file {path}: unknown key(s) {', '.join(unknown)}",
            hint=f"valid keys: the build flags' names ({', '.join(sorted(FLAG_ALIASES))}, ...) or "
                 f"{', '.join(sorted(_FIELDS))}",
        )
    # Checked here, on the file's own values, so the message names the file and the key as written,
    # and a wrong value is refused even where a flag overrides it (the file is still wrong).
    problems = []
    for name, value in section.items():
        section[name], problem = _checked(_FIELDS[name], value)
        if problem:
            problems.append(f"{spelled[name]} = {_show(value)} ({problem})")
    if problems:
        raise InputError(f"config file {path}: {'; '.join(problems)}", hint="fix the value(s) in the file")
    for budget, gate in BUDGET_GATES.items():
        if budget in section and gate not in section:
            section[gate] = section[budget]
    return dict(section)


def resolve_config(file_values: dict, flag_values: dict) -> BuildConfig:
    merged = {**file_values, **{k: v for k, v in flag_values.items() if v is not None}}
    try:
        cfg = BuildConfig(**merged)
    except TypeError as exc:
        raise InputError(f"bad build configuration: {exc}") from exc
    _check_types(cfg)
    return cfg


_TYPES = {"bool": bool, "int": int, "float": float, "str": str, "list": list}
# --max-accuracy-drop's reference: the distilled fp32 student or the teacher (gates.py judges by it)
DROP_REFERENCES = ("fp32", "teacher")
_CHOICES = {"channels": (1, 3), "gate_drop_reference": DROP_REFERENCES}
_FRACTIONS = ("gate_min_accuracy", "gate_max_accuracy_drop", "gate_min_teacher_accuracy")
_POSITIVE = ("epochs", "teacher_epochs", "qat_epochs", "batch_size", "bench_runs", "max_rounds",
             "lr", "min_compression", "assistant_ratio", "max_latency_ms", "max_size_kb",
             "gate_max_latency_ms", "gate_max_size_kb")
_NON_NEGATIVE = ("bench_warmup", "arm_tolerance_steps")


def _field_types(f: dataclasses.Field) -> tuple[type, type | None]:
    """``list[int] | None`` -> (list, int); ``float | None`` -> (float, None)."""
    text = str(f.type).split("|")[0].strip()
    outer, _, inner = text.partition("[")
    return _TYPES[outer], _TYPES[inner.rstrip("]")] if inner else None


def _is(value, expected: type) -> bool:
    """A TOML or flag value of the expected type: an int is a float too, a bool is never a number."""
    if isinstance(value, bool):
        return expected is bool
    if expected is float:
        return isinstance(value, (int, float))
    return isinstance(value, expected)


def _show(value) -> str:
    return repr(value) if not isinstance(value, bool) else str(value).lower()


def _checked(f: dataclasses.Field, value):
    """``value`` for field ``f`` (an int where a float is expected becomes that float) and what is
    wrong with it, or None. A config file is typed by hand: catch a wrong type or range here, not
    as a TypeError deep in a stage."""
    if value is None:
        return value, None
    expected, element = _field_types(f)
    if not _is(value, expected):
        return value, f"expected {'a list of ' + element.__name__ if element else expected.__name__}"
    if expected is float:
        value = float(value)
    if element is not None:
        if not all(_is(v, element) for v in value):
            return value, f"expected a list of {element.__name__}"
        value = [element(v) for v in value]
    return value, _range_problem(f.name, value)


def _range_problem(name: str, value) -> str | None:
    if name in _POSITIVE and value <= 0:
        return "must be > 0"
    if name in _NON_NEGATIVE and value < 0:
        return "must be >= 0"
    if name in _FRACTIONS and not 0.0 <= value <= 1.0:
        return "a fraction in [0, 1]: write 95% as 0.95"
    if name in _CHOICES and value not in _CHOICES[name]:
        return f"expected one of {', '.join(map(str, _CHOICES[name]))}"
    if name == "image_size" and value and (len(value) != 2 or min(value) < 1):
        return "two positive sizes H W"
    return None


def _check_types(cfg: BuildConfig) -> None:
    """The resolved config, flags included: each value of its field's type and range."""
    problems = []
    for f in dataclasses.fields(cfg):
        value, problem = _checked(f, getattr(cfg, f.name))
        setattr(cfg, f.name, value)
        if problem:
            problems.append(f"{f.name} = {_show(value)} ({problem})")
    if problems:
        raise InputError(f"bad build configuration: {'; '.join(problems)}")
