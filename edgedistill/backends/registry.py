"""The export backends, by name: each is a class registered from its own folder.

A new backend (Core ML, ONNX Runtime Mobile, TFLite Micro) is a folder with a :class:`Backend`
subclass decorated with :func:`register_backend` and one import line in ``backends/__init__.py``:
the build then exports, verifies, benchmarks and ships its artifacts with no other edit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgedistill.artifacts import ArtifactSpec
from edgedistill.backends.io import RuntimeModel
from edgedistill.errors import EdgeDistillError, ExportError


@dataclass
class ExportInputs:
    """What a backend may export from, for one student."""

    sample: object  # torch.Tensor: a few float NCHW inputs to trace with
    dynamic_batch: bool  # whether the student's family exports with a dynamic batch dimension
    student: object = None  # the distilled float student (source "float")
    converted: object = None  # the QAT-converted PT2E graph (source "qat")
    quantizer: object = None  # the PT2E quantizer that graph was prepared with
    exported: dict[str, Path] = field(default_factory=dict)  # artifacts already written this stage, by name


@dataclass
class BackendChecks:
    """What a backend checks beyond accuracy and agreement."""

    problems: list[str] = field(default_factory=list)
    tensor_dtypes: dict = field(default_factory=dict)
    builtin_kernels_accuracy: float | None = None


class Backend:
    """Exports, loads and runs the artifacts of one format."""

    name: ClassVar[str]
    suffix: ClassVar[str]  # file suffix of its artifacts, e.g. ".tflite"

    def artifacts(self) -> list[ArtifactSpec]:
        """The files this backend makes from a student, in the order they are exported."""
        raise NotImplementedError

    def export(self, spec: ArtifactSpec, inputs: ExportInputs, path: Path) -> None:
        raise NotImplementedError

    def load(self, path: Path, *, threads: int = 1) -> RuntimeModel:
        raise NotImplementedError

    def check(self, precision: str, path: Path, model: RuntimeModel, predict, labels: np.ndarray,
              predictions: np.ndarray, min_agreement: float) -> BackendChecks:
        """Format-specific checks (dtypes, kernels). ``predict(model)`` gives a model's logits on the
        test split; ``predictions`` are the artifact's own top-1 answers."""
        return BackendChecks()

    def quantization_evidence(self, model: RuntimeModel) -> tuple[bool, str]:
        """Whether a loaded int8 artifact really is quantized, and the evidence in words."""
        return False, f"{self.name} has no quantization check"

    def bench_delegate(self, target_delegate: str) -> str:
        """The delegate to benchmark this backend's artifacts with on a target."""
        return "cpu"


_BACKENDS: dict[str, Backend] = {}


def register_backend(cls: type[Backend]) -> type[Backend]:
    if cls.name in _BACKENDS:
        raise ValueError(f"backend {cls.name!r} is registered twice")
    _BACKENDS[cls.name] = cls()
    return cls


def backends() -> list[Backend]:
    """Every registered backend, in registration order."""
    return list(_BACKENDS.values())


def backend(name: str) -> Backend:
    try:
        return _BACKENDS[name]
    except KeyError:
        raise KeyError(f"no backend {name!r} (have {', '.join(_BACKENDS)})") from None


def backend_for(path: Path | str) -> Backend:
    suffix = Path(path).suffix
    for b in _BACKENDS.values():
        if b.suffix == suffix:
            return b
    raise KeyError(f"no backend reads {suffix or 'files without a suffix'} (have "
                   f"{', '.join(b.suffix for b in _BACKENDS.values())})")


def load_model(path: Path | str, *, threads: int = 1) -> RuntimeModel:
    """Load any artifact with the backend its suffix names."""
    return backend_for(path).load(Path(path), threads=threads)


def export_artifacts(specs: list[ArtifactSpec], inputs: ExportInputs, folder: Path) -> None:
    """Export ``specs`` into ``folder`` in order, each by its backend; a later one may read an
    earlier one's file through ``inputs.exported``."""
    for spec in specs:
        path = Path(folder) / spec.name
        try:
            backend(spec.backend).export(spec, inputs, path)
        except EdgeDistillError:
            raise
        except Exception as exc:  # a converter's crash: one clear line, the traceback kept in a file
            raise _export_error(spec, exc, Path(folder)) from exc
        inputs.exported[spec.name] = path


def _export_error(spec: ArtifactSpec, exc: Exception, folder: Path) -> ExportError:
    import traceback

    log = folder / f"{spec.name}.export-error.txt"
    log.write_text("".join(traceback.format_exception(exc)))
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return ExportError(f"exporting {spec.name} failed in the {spec.backend} converter: {type(exc).__name__}: {first}",
                       hint=f"the traceback is in {log}; please report it with that file")


def artifact_specs(source: str | None = None) -> list[ArtifactSpec]:
    """Every backend's artifacts (of one ``source``, or all), in registration order."""
    return [a for b in _BACKENDS.values() for a in b.artifacts() if source is None or a.source == source]


def main_artifact() -> ArtifactSpec:
    mains = [a for a in artifact_specs() if a.main]
    if len(mains) != 1:
        raise RuntimeError(f"exactly one artifact must be the bundle's model, found {[a.name for a in mains]}")
    return mains[0]
