"""Artifacts are typed records declared by registered backends: the stages loop over them, so a
new backend is a folder and a registration, not edits across the pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bench_support.models import tiny_models

from edgedistill.artifacts import ArtifactSpec
from edgedistill.backends import artifact_specs, backend_for, load_model, main_artifact, registry


def test_the_shipped_artifacts_in_manifest_order_with_one_main_model():
    specs = artifact_specs()
    assert [a.name for a in specs] == ["model.tflite", "model_fp32.tflite", "model.onnx", "model_int8.onnx"]
    assert main_artifact().name == "model.tflite" and main_artifact().precision == "int8"
    # both int8 files are made from the int8 graph that ships, and checked against it alike
    assert [a.name for a in artifact_specs("qat")] == ["model.tflite", "model_int8.onnx"]
    by_name = {a.name: a for a in specs}
    assert by_name["model_int8.onnx"].reference == by_name["model.tflite"].reference == "qat"
    assert by_name["model_int8.onnx"].min_agreement == by_name["model.tflite"].min_agreement
    assert by_name["model.tflite"].quantization and not by_name["model.onnx"].quantization


def test_a_backend_is_found_by_the_files_suffix_and_loads_it():
    models = tiny_models()
    assert backend_for(models.tflite_dynamic).name == "tflite"
    assert backend_for(models.onnx_dynamic).name == "onnx"
    model = load_model(models.tflite_dynamic)
    x = np.zeros((3, *model.input_spec.shape[1:]), dtype=np.float32)
    assert model.run(x).shape == (3, 10)
    with pytest.raises(KeyError, match="no backend reads .mlmodel"):
        backend_for("model.mlmodel")


def _register_toy(monkeypatch, name: str, export=None):
    """Register a backend ``name`` with one float artifact ``model.<name>`` (and ``export``, if
    given) for this test only; return (its class, its artifact spec)."""
    monkeypatch.setattr(registry, "_BACKENDS", dict(registry._BACKENDS))
    spec = ArtifactSpec(name=f"model.{name}", backend=name, precision="fp32", layout="NCHW", source="float",
                        reference="fp32", min_agreement=0.99)
    members = {"name": name, "suffix": f".{name}", "artifacts": lambda self: [spec]}
    if export is not None:
        members["export"] = export
    return registry.register_backend(type(f"{name.title()}Backend", (registry.Backend,), members)), spec


def test_a_new_backend_is_one_registered_class(monkeypatch):
    ToyBackend, toy = _register_toy(monkeypatch, "toy")
    assert artifact_specs("float")[-1] is toy  # the export stage exports it, verify checks it, the bundle ships it
    assert backend_for(Path("x/model.toy")).name == "toy"
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_backend(ToyBackend)


def test_a_converter_crash_is_one_clear_error_with_its_traceback_kept(monkeypatch, tmp_path):
    from edgedistill.errors import EXIT_INTERNAL, ExportError

    def export(self, spec, inputs, path):
        raise RuntimeError("Dimension size after padding is not at least 0\n  (deep converter detail)")

    _, crash = _register_toy(monkeypatch, "crash", export)

    with pytest.raises(ExportError, match="model.crash failed in the crash converter: RuntimeError: Dimension") as err:
        registry.export_artifacts([crash], registry.ExportInputs(sample=None, dynamic_batch=True), tmp_path)
    assert err.value.exit_code == EXIT_INTERNAL and "model.crash.export-error.txt" in err.value.hint
    assert "deep converter detail" in (tmp_path / "model.crash.export-error.txt").read_text()
    assert not (tmp_path / "model.crash").exists()


def test_an_artifact_spec_refuses_an_unknown_reference_or_source():
    with pytest.raises(ValueError, match="reference"):
        ArtifactSpec("m.x", "x", "fp32", "NCHW", "float", "teacher", 0.9)
    with pytest.raises(ValueError, match="source"):
        ArtifactSpec("m.x", "x", "fp32", "NCHW", "ptq", "fp32", 0.9)


def test_the_report_says_which_loss_terms_qat_left_out():
    from edgedistill.bundle.report import _qat_loss_note

    note = _qat_loss_note({"qat_loss": "ce=0.5,kd=1.0,T=4.0",
                           "qat_loss_dropped": {"hint": "the PT2E-exported graph has no module paths to tap"}})
    assert "without hint" in note[-1] and "no module paths to tap" in note[-1]
    assert _qat_loss_note({"qat_loss": "ce=0.5,kd=0.5,T=4.0", "qat_loss_dropped": {}}) == []
