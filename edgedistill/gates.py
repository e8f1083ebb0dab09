"""Release gates: pass/fail rules a CI job puts on the measured result of a build.

Budgets (the target's latency and size) steer which student is chosen; gates judge what came out.
Every gate reads a value the manifest records for the main artifact (``manifest["model"]``,
``model.tflite``), so a gate can be re-checked later from the bundle alone. The build evaluates the
gates on the manifest it is about to write and, when one fails, exits 4 without writing the bundle
(the run directory keeps everything for inspection).

Accuracies and drops are fractions: ``min_accuracy=0.95`` is 95 %, ``max_accuracy_drop=0.01`` is one
percentage point below the reference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from edgedistill.errors import (
    EXIT_BUDGET, EXIT_DEVICE, EXIT_GATE, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_RANK_LOST, EXIT_VERIFY,
    GateError, InputError,
)
from edgedistill.config import DROP_REFERENCES  # one list: the config file is checked against it too
SUMMARY_SCHEMA_VERSION = 1

# The ``status`` word of the --json summary for each exit code (docs/release-integration.md).
STATUS_BY_EXIT_CODE = {
    EXIT_OK: "ok",
    EXIT_INTERNAL: "error",
    EXIT_INPUT: "input_error",
    EXIT_VERIFY: "verify_failed",
    EXIT_GATE: "gate_failed",
    EXIT_BUDGET: "budget",
    EXIT_DEVICE: "device_error",
    EXIT_RANK_LOST: "rank_lost",
    EXIT_INTERRUPTED: "interrupted",
}


@dataclass(frozen=True)
class GateConfig:
    min_accuracy: float | None = None
    max_accuracy_drop: float | None = None
    drop_reference: str = "fp32"  # "fp32": the distilled fp32 student; "teacher": the teacher
    max_latency_ms: float | None = None  # measured median of the main artifact
    max_size_kb: float | None = None  # bytes of the main artifact / 1024

    def __post_init__(self) -> None:
        if self.drop_reference not in DROP_REFERENCES:
            raise InputError(f"drop reference {self.drop_reference!r} is not one of {', '.join(DROP_REFERENCES)}")
        for name in ("min_accuracy", "max_accuracy_drop"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise InputError(f"{name} {value:g} is not a fraction in [0, 1]",
                                 hint="write 95% as 0.95, one percentage point as 0.01")
        for name in ("max_latency_ms", "max_size_kb"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise InputError(f"{name} {value:g} must be positive")

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.min_accuracy, self.max_accuracy_drop, self.max_latency_ms,
                                             self.max_size_kb))

    @classmethod
    def from_build_config(cls, cfg) -> "GateConfig":
        """Read ``gate_*`` fields of a BuildConfig; missing fields mean "no gate"."""
        return cls(
            min_accuracy=getattr(cfg, "gate_min_accuracy", None),
            max_accuracy_drop=getattr(cfg, "gate_max_accuracy_drop", None),
            drop_reference=getattr(cfg, "gate_drop_reference", None) or "fp32",
            max_latency_ms=getattr(cfg, "gate_max_latency_ms", None),
            max_size_kb=getattr(cfg, "gate_max_size_kb", None),
        )


@dataclass(frozen=True)
class GateResult:
    name: str  # "min_accuracy" | "max_accuracy_drop" | "max_latency_ms" | "max_size_kb" | "min_teacher_accuracy"
    passed: bool
    measured: float | None
    required: float
    reason: str  # one line a person can act on; also said when the gate passes
    unit: str = ""  # "fraction" | "ms" | "KB"

    def to_dict(self) -> dict:
        return asdict(self)


class GateFailed(GateError):
    """One or more gates failed; ``results`` holds every gate evaluated and ``manifest`` the manifest
    they were evaluated on (the bundle that was not written), for the --json summary."""

    def __init__(self, results: list[GateResult], manifest: dict | None = None, hint: str | None = None) -> None:
        self.results = results
        self.manifest = manifest
        failed = [r for r in results if not r.passed]
        super().__init__(
            "gate failed, the bundle was not written: " + "; ".join(r.reason for r in failed),
            hint=hint or "the run directory keeps every artifact; relax the gate or improve the model and rerun",
        )


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _ms(ms: float) -> str:
    return f"{ms * 1000:.1f} us" if ms < 1 else f"{ms:.2f} ms"


def evaluate_gates(manifest: dict, cfg: GateConfig) -> list[GateResult]:
    """Evaluate the configured gates (only those) on ``manifest``'s main artifact."""
    main = manifest["model"]
    art = manifest["artifacts"][main]
    results: list[GateResult] = []
    acc = art.get("accuracy")
    if cfg.min_accuracy is not None:
        ok = acc is not None and acc >= cfg.min_accuracy
        results.append(GateResult(
            "min_accuracy", ok, acc, cfg.min_accuracy,
            f"{main} test accuracy {_pct(acc) if acc is not None else 'unknown'} "
            f"{'>=' if ok else '<'} required {_pct(cfg.min_accuracy)}", "fraction",
        ))
    if cfg.max_accuracy_drop is not None:
        if cfg.drop_reference == "teacher":
            ref, ref_name = manifest.get("teacher", {}).get("test_accuracy"), "teacher"
        else:
            ref = manifest.get("student", {}).get("test_accuracy_fp32")
            ref_name = "fp32 student"
            if ref is None:  # older manifests: the fp32 export measures the same student
                ref = manifest["artifacts"].get("model_fp32.tflite", {}).get("accuracy")
        drop = None if ref is None or acc is None else ref - acc
        ok = drop is not None and drop <= cfg.max_accuracy_drop + 1e-12
        results.append(GateResult(
            "max_accuracy_drop", ok, drop, cfg.max_accuracy_drop,
            (f"{main} accuracy {_pct(acc)} is {100 * abs(drop):.2f} points {'below' if drop >= 0 else 'above'} "
             f"the {ref_name} ({_pct(ref)}); allowed drop {100 * cfg.max_accuracy_drop:.2f} points")
            if drop is not None else f"accuracy drop vs the {ref_name} unknown: the manifest lacks it",
            "fraction",
        ))
    if cfg.max_latency_ms is not None:
        lat = art.get("latency") or {}
        ms = lat.get("median_ms")
        ok = ms is not None and ms <= cfg.max_latency_ms
        where = f"on {lat.get('device')} ({lat.get('runtime')}, {lat.get('threads')} threads"
        where += ", the build host, not the target)" if lat.get("measured_on") == "host" else ")"
        results.append(GateResult(
            "max_latency_ms", ok, ms, cfg.max_latency_ms,
            f"{main} median latency {_ms(ms)} {where} {'<=' if ok else '>'} required {cfg.max_latency_ms:g} ms"
            if ms is not None else f"{main} has no measured latency", "ms",
        ))
    if cfg.max_size_kb is not None:
        nbytes = manifest.get("files", {}).get(main, {}).get("bytes")
        kb = None if nbytes is None else nbytes / 1024
        ok = kb is not None and kb <= cfg.max_size_kb
        results.append(GateResult(
            "max_size_kb", ok, kb, cfg.max_size_kb,
            f"{main} is {kb:.1f} KB {'<=' if ok else '>'} required {cfg.max_size_kb:g} KB"
            if kb is not None else f"{main} has no recorded size", "KB",
        ))
    return results


def check_gates(manifest: dict, cfg: GateConfig) -> list[GateResult]:
    """Evaluate the gates; raise :class:`GateFailed` (exit 4) if any failed, else return them."""
    results = evaluate_gates(manifest, cfg)
    if any(not r.passed for r in results):
        raise GateFailed(results, manifest)
    return results


def check_teacher_gate(val_accuracy: float, required: float) -> GateResult:
    """``--min-teacher-accuracy``: checked right after the teacher stage, before any training, since
    a student cannot be better than a teacher that never learned the task. Raises GateFailed."""
    if not 0.0 <= required <= 1.0:
        raise InputError(f"min_teacher_accuracy {required:g} is not a fraction in [0, 1]",
                         hint="write 50% as 0.5")
    ok = val_accuracy >= required
    result = GateResult(
        "min_teacher_accuracy", ok, val_accuracy, required,
        f"teacher validation accuracy {_pct(val_accuracy)} {'>=' if ok else '<'} required {_pct(required)}",
        "fraction",
    )
    if not ok:
        raise GateFailed([result], hint="nothing was trained; check the teacher's weights and the data's "
                                        "preprocessing (--mean/--std), or relax --min-teacher-accuracy")
    return result


def summary_json(
    status: str,
    gates: list[GateResult],
    exit_code: int,
    reason: str | None,
    manifest: dict | None,
    bundle_dir: Path | str | None,
) -> dict:
    """The machine-readable summary ``edgedistill build --json`` prints, also when it stops early.

    ``manifest`` is the one written (or, on a gate failure, the one that would have been); the
    summary quotes what CI usually needs from it and never more than the manifest says.
    """
    summary: dict = {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "status": status,
        "exit_code": exit_code,
        "reason": reason,
        "bundle": str(bundle_dir) if bundle_dir is not None else None,
        "gates": [g.to_dict() for g in gates],
        "model": None,
        "artifacts": {},
    }
    if manifest is None:
        return summary
    main = manifest.get("model", "model.tflite")
    files = manifest.get("files", {})
    for name, art in manifest.get("artifacts", {}).items():
        lat = art.get("latency") or {}
        summary["artifacts"][name] = {
            "precision": art.get("precision"),
            "accuracy": art.get("accuracy"),
            "agreement": art.get("agreement"),
            "median_ms": lat.get("median_ms"),
            "p90_ms": lat.get("p90_ms"),
            "measured_on": lat.get("measured_on"),
            "device": lat.get("device"),
            "runtime": lat.get("runtime"),
            "bytes": files.get(name, {}).get("bytes"),
            "sha256": files.get(name, {}).get("sha256"),
        }
    student, teacher = manifest.get("student", {}), manifest.get("teacher", {})
    summary["model"] = {
        "file": main,
        "target": manifest.get("target", {}).get("name"),
        **summary["artifacts"].get(main, {}),
        "params": student.get("params"),
        "teacher_accuracy": teacher.get("test_accuracy"),
        "student_fp32_accuracy": student.get("test_accuracy_fp32"),
    }
    return summary


def status_for(exit_code: int) -> str:
    return STATUS_BY_EXIT_CODE.get(exit_code, "error")


def error_summary(command: str | None, exit_code: int, reason: str, exc: BaseException | None = None) -> dict:
    """What ``edgedistill COMMAND --json`` prints on stdout when it stops early (a usage error, bad
    input, a failed gate, Ctrl-C, a bug), so stdout always parses: every command's document carries
    ``status``, ``exit_code`` and ``reason``; ``build``'s is its summary (with the gates and the
    rejected manifest a GateFailed carries), ``verify``'s its report."""
    status = status_for(exit_code)
    if command == "build":
        return summary_json(status, getattr(exc, "results", []), exit_code, reason, getattr(exc, "manifest", None), None)
    if command == "verify":
        from edgedistill.verify.bundle import error_report

        return error_report(None, status, exit_code, reason)
    return {"status": status, "exit_code": exit_code, "reason": reason}
