"""``manifest.json``: the public contract an app reads to run ``model.tflite`` correctly.

Apps feed ``input`` as: ``float = (raw_pixel * pixel_scale - mean[c]) / std[c]`` then, for an int8
input, ``q = round(float / scale + zero_point)`` clamped to [-128, 127], in the stated layout; and
read logits as ``(q - zero_point) * scale``. Keys are only ever added, never renamed.
"""

from __future__ import annotations

from pathlib import Path

from edgedistill.data.report import DataLoadReport

SCHEMA_VERSION = 1


def _io(report: dict, pre: dict | None) -> dict:
    d = dict(report)
    if pre is not None:
        d["preprocessing"] = pre
    return d


def _load_report(data) -> dict:
    return (getattr(data, "load_report", None) or DataLoadReport()).to_dict()


def build_manifest(result, versions: dict, files: dict[str, dict]) -> dict:
    data = result.data
    pre = data.preprocessing.to_dict()
    reports = {r["file"]: r for r in result.verification}
    main = reports["model.tflite"]
    artifacts = {}
    for name, r in reports.items():
        bench = result.benchmarks.get(name, {})
        artifacts[name] = {
            "format": r["format"],
            "precision": r["precision"],
            "input": _io(r["input"], pre),
            "output": r["output"],
            "accuracy": r["accuracy"],
            "agreement": r["agreement"],
            "agreement_reference": r["reference"],
            "max_abs_logit_diff": r["max_abs_logit_diff"],
            "builtin_kernels_accuracy": r["builtin_kernels_accuracy"],
            "tensor_dtypes": r["tensor_dtypes"],
            "latency": {
                "median_ms": bench.get("median_ms"),
                "p90_ms": bench.get("p90_ms"),
                "mean_ms": bench.get("mean_ms"),
                "runs": bench.get("runs"),
                "warmup": bench.get("warmup"),
                "threads": bench.get("threads"),
                "delegate": bench.get("delegate"),
                "runtime": f"{bench.get('runtime')} {bench.get('runtime_version')}",
                "device": bench.get("device"),
                # Host figures are this build machine's, not the target's.
                "measured_on": "host" if bench.get("is_host") else "device",
                "device_info": bench.get("device_info"),
            },
        }
    target = result.target
    student, scratch = result.student, result.scratch
    cfg = result.config
    return {
        "schema_version": SCHEMA_VERSION,
        "model": "model.tflite",
        "input": _io(main["input"], pre),
        "output": {**main["output"], "meaning": "logits; apply softmax for probabilities"},
        "labels": list(data.class_names),
        "labels_file": "labels.txt",
        "artifacts": artifacts,
        "target": {
            "name": target.name, "description": target.description, "cpu": target.cpu, "isa": target.isa,
            "abi": target.abi, "runtime": target.runtime, "delegate": target.delegate, "threads": target.threads,
            "precision": target.precision,
            "budgets": {"latency_ms": target.budgets.latency_ms, "model_size_kb": target.budgets.model_size_kb,
                        "peak_memory_mb": target.budgets.peak_memory_mb},
        },
        "teacher": {"params": result.teacher["params"], "test_accuracy": result.teacher["test_acc"],
                    "source": result.teacher["source"]},
        "student": {
            "params": student.params, "spec": student.spec, "test_accuracy_fp32": student.test_acc,
            "test_accuracy_qat": result.qat["test_acc"],
            "scratch_test_accuracy": scratch.test_acc if scratch else None,
            "compression": result.teacher["params"] / student.params,
            "loss": result.loss, "augment": result.augment, "assistants": student.assistants,
            "selection_rule": result.selection["rule"],
        },
        "data": {"name": data.name, "fingerprint": data.fingerprint(), "source": data.source,
                 "counts": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
                 # What loading did to the data: every unreadable file skipped, the images resized.
                 "load_report": _load_report(data)},
        "quantization": {
            "model.tflite": "PT2E quantization-aware fine-tuning (teacher soft targets), per-channel symmetric "
                            "int8 weights, int8 activations, int32 biases",
            "model_int8.onnx": "post-training static QDQ by onnxruntime from the fp32 student",
            "calibration": result.export["calibration"],
        },
        "selection": {
            "rule": result.selection["rule"], "note": result.selection.get("note", ""),
            "latency_model": result.selection.get("latency_model", ""),
            "chosen": result.selection["chosen"]["name"],  # the shipped student, after any feedback rounds
            "candidates": [
                {k: c.get(k) for k in ("name", "params", "flops", "predicted_size_kb", "predicted_latency_ms",
                                       "predicted_peak_memory_mb", "fits", "why_not")}
                for c in result.selection["candidates"]
            ],
        },
        "feedback_rounds": list(getattr(result, "feedback_rounds", [])),
        # What the build said loudly (a teacher at chance, a collapsed student): a CI reading the
        # manifest alone sees them too.
        "warnings": list(getattr(result, "warnings", [])),
        "gates": [g.to_dict() for g in getattr(result, "gates", [])],
        "seed": cfg.seed,
        "config": cfg.to_dict(),
        "versions": versions,
        "files": files,
    }


def manifest_files(bundle: Path) -> dict[str, dict]:
    from edgedistill.fsutil import sha256_file

    return {
        p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(bundle.iterdir())
        if p.is_file() and p.name != "manifest.json"
    }
