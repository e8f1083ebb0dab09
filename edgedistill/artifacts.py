"""Every exported file as a typed record: what it is, where it is, and what it is checked against.

A backend (:mod:`edgedistill.backends`) declares the :class:`ArtifactSpec` s it makes; the build's
stages export them (from the QAT graph or the float student, as ``source`` says), verify each against
its torch ``reference`` with its own threshold, benchmark it, and the bundle ships those with
``ships``. No stage knows an artifact by its file name.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

# The torch models an artifact's logits are compared with (see the verify stage).
REFERENCES = {
    # the PT2E-converted graph that ships: fine-tuned (QAT) or, when clearly better, post-training
    "qat": "torch int8 (PT2E converted) student",
    "fp32": "torch fp32 student",
}
SOURCES = ("qat", "float")  # the shipped int8 graph (quantize stage) or the float student (export stage)


@dataclass(frozen=True)
class ArtifactSpec:
    """One file a backend makes from a student, before it exists."""

    name: str  # file name in the run directory and the bundle, e.g. "model.tflite"
    backend: str  # the registered backend that exports, loads and runs it
    precision: str  # "int8" | "fp32"
    layout: str  # input layout: "NHWC" | "NCHW"
    source: str  # "qat" | "float" (see SOURCES)
    reference: str  # "qat" | "fp32" (see REFERENCES)
    min_agreement: float  # top-1 agreement with the reference below which verification fails
    quantization: str = ""  # how it was quantized, in words, for the manifest ("" for float files)
    main: bool = False  # the bundle's model: manifest["model"], the gates, the app's file
    ships: bool = True  # copied into the bundle

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"{self.name}: source {self.source!r} is not one of {SOURCES}")
        if self.reference not in REFERENCES:
            raise ValueError(f"{self.name}: reference {self.reference!r} is not one of {sorted(REFERENCES)}")

    @property
    def reference_name(self) -> str:
        return REFERENCES[self.reference]

    def at(self, path: Path) -> "Artifact":
        return Artifact(self, Path(path))


@dataclass(frozen=True)
class Artifact:
    """An exported file of the student, in the run directory."""

    spec: ArtifactSpec
    path: Path

    @property
    def name(self) -> str:
        return self.spec.name

    def moved(self, folder: Path) -> "Artifact":
        """The same artifact in another folder (run directories move)."""
        return replace(self, path=Path(folder) / self.spec.name)
