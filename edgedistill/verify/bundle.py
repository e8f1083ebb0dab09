"""``edgedistill verify BUNDLE``: re-check a release bundle exactly as an app build would consume it.

The bundle is judged by its own manifest only, without the run directory or the training data:

1. integrity: every file in ``files`` exists with its byte count and sha256; no file is unlisted;
2. contract: each artifact loads, and takes and gives the tensors its manifest entry promises;
3. parity: ``verification_sample.npz`` fed exactly as the manifest says (raw pixels -> preprocessing
   -> layout -> int8 quantization) gives the same top-1 as when the bundle was written;
4. dtypes: the int8 .tflite is still fully integer, the int8 .onnx still quantized.

An artifact that fails its integrity check is not loaded: a damaged flatbuffer can crash the
interpreter instead of raising, and the hash mismatch already names the file.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from edgedistill.errors import EXIT_OK, EXIT_VERIFY, InputError

MANIFEST = "manifest.json"
SAMPLE = "verification_sample.npz"
SAMPLE_IMAGES = 64  # the first test images, kept in SAMPLE and checked on ARM (stages/arm.py)
MIN_SAMPLE_AGREEMENT = 0.99  # with the top-1 stored when the bundle was written


@dataclass
class Check:
    """One verdict about one file of the bundle."""

    subject: str  # the file it is about, or "bundle"
    check: str  # "manifest" | "listed" | "bytes" | "sha256" | "unlisted" | "loads" | "io" | "parity" | "dtypes"
    passed: bool
    detail: str


@dataclass
class ArtifactParity:
    file: str
    samples: int
    agreement: float  # top-1 agreement with the predictions stored in the sample
    accuracy: float  # on the sample's labels
    manifest_accuracy: float | None  # on the full test split, as recorded at build time


@dataclass
class VerifyReport:
    bundle: Path
    checks: list[Check] = field(default_factory=list)
    parity: list[ArtifactParity] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def problems(self) -> list[str]:
        return [f"{c.subject}: {c.detail}" for c in self.checks if not c.passed]

    def add(self, subject: str, check: str, passed: bool, detail: str) -> bool:
        self.checks.append(Check(subject, check, passed, detail))
        return passed

    def to_dict(self) -> dict:
        return {
            "status": "ok" if self.passed else "verify_failed",
            "exit_code": EXIT_OK if self.passed else EXIT_VERIFY,
            "bundle": str(self.bundle),
            "passed": self.passed,
            "problems": self.problems,
            "checks": [asdict(c) for c in self.checks],
            "parity": [asdict(p) for p in self.parity],
        }


def verify_bundle(path: Path) -> VerifyReport:
    """Verify the bundle folder ``path``; raises :class:`InputError` if it is not a bundle (not a
    folder, no manifest, or a manifest that does not read as one)."""
    bundle = Path(path)
    if not bundle.is_dir():
        raise InputError(f"{bundle} is not a bundle folder", hint="pass the folder holding manifest.json, e.g. dist/android-arm64")
    report = VerifyReport(bundle)
    manifest = _read_manifest(bundle, report)
    intact = _check_files(bundle, manifest, report)
    _check_labels(bundle, manifest, report, intact)
    sample = _read_sample(bundle, report, intact)
    for name, entry in manifest.get("artifacts", {}).items():
        _check_artifact(bundle, name, entry, sample, report, intact)
    return report


def _read_manifest(bundle: Path, report: VerifyReport) -> dict:
    """The manifest, checked against the schema verify relies on. A folder without one, or a
    manifest that does not read as one, is not a bundle verify can judge: bad input (InputError,
    exit 2), not a verification failure. Damage it can judge (a file's hash, size, presence) is
    a failed check (exit 3)."""
    path = bundle / MANIFEST
    if not path.is_file():
        raise InputError(f"{bundle} is not a bundle: it has no {MANIFEST}",
                         hint="pass the folder `edgedistill build` wrote, e.g. dist/android-arm64, or rebuild it")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc})", hint="rebuild the bundle") from exc
    problem = _schema_problem(manifest)
    if problem:
        raise InputError(f"{path} is not a bundle manifest: {problem}", hint="rebuild the bundle")
    report.add(MANIFEST, "manifest", True, f"schema {manifest.get('schema_version')}, "
               f"{len(manifest['files'])} files, {len(manifest['artifacts'])} artifacts")
    return manifest


def _schema_problem(manifest) -> str | None:
    """What keeps ``manifest`` from being read as a bundle's, or None: the keys verify reads, of
    the types it reads them as."""
    if not isinstance(manifest, dict):
        return f"a JSON {type(manifest).__name__}, not an object"
    missing = [k for k in ("files", "artifacts", "model") if k not in manifest]
    if missing:
        return f"it lacks {', '.join(missing)}"
    files, artifacts = manifest["files"], manifest["artifacts"]
    if not isinstance(files, dict):
        return f"files is a JSON {type(files).__name__}, not an object of file name -> {{bytes, sha256}}"
    for name, rec in files.items():
        if not isinstance(rec, dict):
            return f"files[{name!r}] is {rec!r}, not an object {{bytes, sha256}}"
    if not isinstance(artifacts, dict):
        return f"artifacts is a JSON {type(artifacts).__name__}, not an object of file name -> description"
    for name, entry in artifacts.items():
        if not isinstance(entry, dict):
            return f"artifacts[{name!r}] is {entry!r}, not an object"
    if not isinstance(manifest["model"], str) or manifest["model"] not in artifacts:
        return f"its main model {manifest['model']!r} has no entry in artifacts"
    if not isinstance(manifest.get("labels_file", ""), str) or not isinstance(manifest.get("labels", []), list):
        return "labels_file must be a file name and labels a list"
    return None


def _check_files(bundle: Path, manifest: dict, report: VerifyReport) -> set[str]:
    """Byte counts and hashes of the listed files; returns the names that are intact."""
    from edgedistill.fsutil import sha256_file

    intact = set()
    listed = manifest["files"]
    for name, rec in sorted(listed.items()):
        path = bundle / name
        if Path(name).name != name:  # a manifest must not point outside the bundle
            report.add(name, "listed", False, "file name in the manifest is a path; the manifest was altered")
            continue
        if not path.is_file():
            report.add(name, "listed", False, "listed in the manifest but missing from the bundle")
            continue
        size = path.stat().st_size
        if size != rec.get("bytes"):
            report.add(name, "bytes", False, f"{size} bytes, the manifest says {rec.get('bytes')} (truncated or replaced)")
            continue
        digest = sha256_file(path)
        if digest != rec.get("sha256"):
            report.add(name, "sha256", False, f"sha256 mismatch: {digest[:16]}..., the manifest says "
                       f"{str(rec.get('sha256'))[:16]}... (the file was modified)")
            continue
        report.add(name, "sha256", True, f"{size:,} bytes, sha256 {digest[:16]}...")
        intact.add(name)
    for path in sorted(bundle.iterdir()):
        if path.name != MANIFEST and path.name not in listed:
            kind = "folder" if path.is_dir() else "file"
            report.add(path.name, "unlisted", False, f"{kind} in the bundle but not in the manifest")
    for name in manifest["artifacts"]:
        if name not in listed:
            report.add(name, "listed", False, "an artifact of the manifest without a files entry (no hash to check)")
    return intact


def _check_labels(bundle: Path, manifest: dict, report: VerifyReport, intact: set[str]) -> None:
    name = manifest.get("labels_file")
    if not name or name not in intact or "labels" not in manifest:
        return
    labels = (bundle / name).read_text().splitlines()
    ok = labels == list(manifest["labels"])
    report.add(name, "labels", ok, f"{len(labels)} labels" if ok else
               f"{len(labels)} lines do not match the manifest's {len(manifest['labels'])} labels")


def _read_sample(bundle: Path, report: VerifyReport, intact: set[str]) -> dict | None:
    if SAMPLE not in intact:
        if not any(c.subject == SAMPLE for c in report.checks):
            report.add(SAMPLE, "listed", False, "missing: parity cannot be re-checked")
        return None
    try:
        with np.load(bundle / SAMPLE, allow_pickle=False) as npz:
            sample = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        report.add(SAMPLE, "loads", False, f"unreadable: {exc}")
        return None
    if "images" not in sample or "labels" not in sample:
        report.add(SAMPLE, "loads", False, f"lacks images/labels (has {', '.join(sorted(sample))})")
        return None
    return sample


def _resized(images, entry: dict):
    """The sample images brought to the manifest's ``input.resize.size``, as an app does."""
    from edgedistill.data.resize import resize_images

    size = (entry["input"].get("resize") or {}).get("size")
    if size is None or tuple(images.shape[1:3]) == tuple(size):
        return images
    return resize_images(images, tuple(size))


def _manifest_specs(entry: dict):
    from edgedistill.data.dataset import Preprocessing
    from edgedistill.backends.io import TensorSpec

    def spec(d: dict) -> TensorSpec:
        q = d.get("quantization") or {}
        return TensorSpec(name=d["name"], shape=tuple(d["shape"]), layout=d["layout"], dtype=d["dtype"],
                          scale=q.get("scale"), zero_point=q.get("zero_point"), batch=d.get("batch", "dynamic"))

    return Preprocessing.from_dict(entry["input"]["preprocessing"]), spec(entry["input"]), spec(entry["output"])


def _io_mismatch(promised, actual) -> str:
    """Where the tensor the model really has differs from what the manifest tells apps."""
    diffs = []
    for attr in ("dtype", "shape", "layout", "batch"):
        if getattr(promised, attr) != getattr(actual, attr):
            diffs.append(f"{attr} {getattr(actual, attr)} vs manifest {getattr(promised, attr)}")
    if promised.dtype == "int8" and actual.dtype == "int8":
        if not math.isclose(promised.scale, actual.scale, rel_tol=1e-6) or promised.zero_point != actual.zero_point:
            diffs.append(f"quantization ({actual.scale}, {actual.zero_point}) vs manifest "
                         f"({promised.scale}, {promised.zero_point})")
    return "; ".join(diffs)


def _check_artifact(bundle: Path, name: str, entry: dict, sample: dict | None, report: VerifyReport,
                    intact: set[str]) -> None:
    from edgedistill.backends import load_model
    from edgedistill.backends.io import from_model_output, to_model_input

    if name not in intact:
        report.add(name, "loads", False, "not loaded: its integrity check failed")
        return
    try:
        model = load_model(bundle / name)
        pre, in_spec, out_spec = _manifest_specs(entry)
    except Exception as exc:  # any runtime or manifest error is a verdict on this file, not a crash
        report.add(name, "loads", False, f"does not load: {exc}")
        return
    report.add(name, "loads", True, f"{entry.get('format', '?')} {entry.get('precision', '?')}")
    for what, promised, actual in (("input", in_spec, model.input_spec), ("output", out_spec, model.output_spec)):
        diff = _io_mismatch(promised, actual)
        report.add(name, "io", not diff, f"{what} {diff}" if diff else f"{what} {actual.dtype} {actual.layout} "
                   f"{list(actual.shape)} as the manifest says")
    if entry.get("precision") == "int8":
        _check_integer(name, model, report)
    if sample is None:
        return
    key = "top1/" + name
    if key not in sample:
        report.add(name, "parity", False, f"{SAMPLE} has no stored predictions {key} (a bundle written before "
                   "predictions were stored): parity cannot be re-checked; rebuild the bundle")
        return
    try:
        logits = from_model_output(model.run(to_model_input(_resized(sample["images"], entry), pre, in_spec)),
                                   out_spec)
    except Exception as exc:
        report.add(name, "parity", False, f"fails on {SAMPLE} fed as the manifest says: {exc}")
        return
    top1 = logits.argmax(1)
    parity = ArtifactParity(
        file=name, samples=len(top1), agreement=float((top1 == sample[key]).mean()),
        accuracy=float((top1 == sample["labels"]).mean()), manifest_accuracy=entry.get("accuracy"),
    )
    report.parity.append(parity)
    ok = parity.agreement >= MIN_SAMPLE_AGREEMENT
    report.add(name, "parity", ok, f"top-1 agreement {parity.agreement:.2%} on {parity.samples} sample images "
               f"({'>=' if ok else '<'} {MIN_SAMPLE_AGREEMENT:.0%}), sample accuracy {parity.accuracy:.2%}")


def _check_integer(name: str, model, report: VerifyReport) -> None:
    from edgedistill.backends import backend_for

    ok, detail = backend_for(name).quantization_evidence(model)
    report.add(name, "dtypes", ok, detail)


def _print_table(report: VerifyReport) -> None:
    from rich.table import Table

    from edgedistill.progress import console

    out = console()
    table = Table(title=f"edgedistill verify {report.bundle}")
    for col in ("file", "check", "result", "detail"):
        table.add_column(col, overflow="fold")
    for c in report.checks:
        table.add_row(c.subject, c.check, "[green]ok[/]" if c.passed else "[bold red]FAIL[/]", c.detail)
    out.print(table)
    if report.parity:
        ptable = Table(title=f"parity on {SAMPLE}")
        for col in ("artifact", "images", "top-1 agreement", "sample accuracy", "test accuracy (manifest)"):
            ptable.add_column(col)
        for p in report.parity:
            manifest_acc = "n/a" if p.manifest_accuracy is None else f"{p.manifest_accuracy:.2%}"
            ptable.add_row(p.file, str(p.samples), f"{p.agreement:.2%}", f"{p.accuracy:.2%}", manifest_acc)
        out.print(ptable)
    if report.passed:
        out.print(f"[bold green]verified[/]: {report.bundle} is intact and its models behave as recorded")
    else:
        out.print(f"[bold red]verification failed[/] ({len(report.problems)} problem(s)): " + "; ".join(report.problems),
                  highlight=False)


def error_report(bundle: Path | None, status: str, exit_code: int, reason: str) -> dict:
    """The ``--json`` report of a verify that could not judge the bundle (bad input, a usage error,
    Ctrl-C): the keys of :meth:`VerifyReport.to_dict`, nothing checked, and ``reason``."""
    return {"status": status, "exit_code": exit_code, "reason": reason,
            "bundle": str(bundle) if bundle is not None else None, "passed": False, "problems": [reason],
            "checks": [], "parity": []}


def verify_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder, e.g. dist/android-arm64.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON report on stdout.")] = False,
) -> int:
    """Re-check a release bundle: file hashes and sizes, models, and parity on its verification sample.

    Exits 0 when the bundle is intact, 3 when it is not, 2 when it is not a bundle.
    """
    # Returns the exit code (a typer command wraps it in ``raise typer.Exit(code)``). A path that is
    # not a bundle raises InputError (exit 2), or with --json prints {"status": "input_error"} and
    # returns 2, so CI always gets a JSON document.
    try:
        report = verify_bundle(bundle)
    except InputError as exc:
        if not json_out:
            raise
        print(json.dumps(error_report(bundle, "input_error", exc.exit_code, str(exc)), indent=2))
        return exc.exit_code
    if json_out:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_table(report)
    return EXIT_OK if report.passed else EXIT_VERIFY
