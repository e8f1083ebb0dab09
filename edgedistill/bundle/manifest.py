"""``manifest.json``: the public contract an app reads to run ``model.tflite`` correctly.

Apps feed ``input`` as: the raw image resized to ``input.resize.size`` (H, W) with its
``interpolation`` (PIL's bilinear on uint8 pixels: the images the model was trained and verified on
were made so), then ``float = (raw_pixel * pixel_scale - mean[c]) / std[c]`` then, for an int8
input, ``q = round(float / scale + zero_point)`` clamped to [-128, 127], in the stated layout; and
read logits as ``(q - zero_point) * scale``. Keys are only ever added, never renamed.
"""

from __future__ import annotations

from pathlib import Path

from edgedistill.data.report import DataLoadReport

SCHEMA_VERSION = 1


def _io(report: dict, pre: dict | None, resize: dict | None = None) -> dict:
    d = dict(report)
    if resize is not None:
        d["resize"] = resize
    if pre is not None:
        d["preprocessing"] = pre
    return d


def portable(value, cwd: Path | None = None, cache: Path | None = None):
    """``value`` (a config or a provenance record) with every absolute path of the build machine
    made portable, in strings and in dict keys (a file's sha256 is keyed by its path): relative
    to the working directory when under it, ``<cache>/...`` under edgedistill's cache, else the
    file or folder name, which is what identifies it (a data folder, a teacher file, weights). A
    bundle ships into an app's repository; the run directory keeps the absolute paths."""
    from edgedistill.paths import cache_dir

    cwd = (cwd or Path.cwd()).resolve()
    cache = (cache or cache_dir()).expanduser().resolve()

    def one(text: str) -> str:
        if not text.startswith("/"):
            return text
        path = Path(text).resolve()
        for root, prefix in ((cwd, ""), (cache, "<cache>/")):
            try:
                return prefix + (path.relative_to(root).as_posix() or ".")
            except ValueError:
                continue
        return path.name or text

    def walk(v):
        if isinstance(v, str):
            return one(v)
        if isinstance(v, dict):
            return {one(k) if isinstance(k, str) else k: walk(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        return v

    return walk(value)


def _resize(data) -> dict:
    """How the app brings an image to the model's input size: the student's resolution (searched
    by select, maybe below the data's) and the one interpolation edgedistill resized with."""
    from edgedistill.data.resize import INTERPOLATION

    full = data.resized_from or data
    return {"size": list(data.image_shape[:2]), "interpolation": INTERPOLATION, "library": "PIL Image.resize, uint8",
            "training_data_size": list(full.image_shape[:2])}


def _load_report(data) -> dict:
    return (data.load_report or DataLoadReport()).to_dict()


_LATENCY_KEYS = ("median_ms", "p90_ms", "mean_ms", "runs", "warmup", "threads", "delegate", "device", "device_info")


def _latency(m) -> dict:
    """A Measurement as the manifest's latency entry (all None for an artifact not measured)."""
    if m is None:
        return {**dict.fromkeys(_LATENCY_KEYS), "runtime": None, "measured_on": None}
    return {
        **{k: getattr(m, k) for k in _LATENCY_KEYS},
        "runtime": f"{m.runtime} {m.runtime_version}",
        # Host figures are this build machine's, not the target's.
        "measured_on": "host" if m.is_host else ("emulated" if m.emulated else "device"),
    }


def build_manifest(result, versions: dict, files: dict[str, dict]) -> dict:
    """The manifest of ``result`` (a pipeline BuildResult) whose bundle holds ``files``."""
    import dataclasses

    data = result.data
    pre = data.preprocessing.to_dict()
    resize = _resize(data)
    shipped = [(a, r) for a, r in zip(result.artifacts, result.verification) if a.spec.ships]
    main_artifact, main = next((a, r) for a, r in shipped if a.spec.main)
    artifacts = {}
    for a, r in shipped:
        artifacts[a.name] = {
            "format": r.format,
            "precision": r.precision,
            "input": _io(r.input, pre, resize),
            "output": r.output,
            "accuracy": r.accuracy,
            "agreement": r.agreement,
            "agreement_reference": r.reference,
            "max_abs_logit_diff": r.max_abs_logit_diff,
            "builtin_kernels_accuracy": r.builtin_kernels_accuracy,
            "tensor_dtypes": r.tensor_dtypes,
            "latency": _latency(result.benchmarks.get(a.name)),
        }
    target = result.target
    student, scratch = result.student, result.scratch
    teacher, selection = result.teacher, result.selection
    cfg = result.config
    return {
        "schema_version": SCHEMA_VERSION,
        "model": main_artifact.name,
        "input": _io(main.input, pre, resize),
        "output": {**main.output, "meaning": "logits; apply softmax for probabilities"},
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
        "teacher": {"params": teacher.params, "test_accuracy": teacher.test_acc, "source": portable(teacher.source),
                    # a teacher from outside the zoo: the layout recognised and the zoo family it maps onto
                    "structure": getattr(teacher, "structure", None)},
        "student": {
            "params": student.params, "spec": student.spec, "test_accuracy_fp32": student.test_acc,
            "test_accuracy_qat": result.qat.test_acc,
            "scratch_test_accuracy": scratch.test_acc if scratch else None,
            "compression": teacher.params / student.params,
            "loss": result.loss, "augment": result.augment, "assistants": student.assistants,
            "init": _init(student.init),
            "selection_rule": selection.rule,
            # QAT trains with the build's loss where it can; the terms it could not use, and why.
            "qat_loss": result.qat.loss_used, "qat_loss_dropped": result.qat.loss_dropped,
            # the int8 weights' mean error taken out of the biases (edgedistill/quantize/bias_correction.py)
            "qat_bias_correction": result.qat.bias_correction,
            # int8 val accuracy before and after fine-tuning; kept false: the graph before it was clearly better (McNemar), and ships
            "qat_val_acc_before": result.qat.val_acc_before, "qat_val_acc_fine_tuned": result.qat.val_acc_fine_tuned,
            "qat_fine_tuned_kept": result.qat.fine_tuned_kept,
            "training": _training(result),
        },
        "data": {"name": data.name, "fingerprint": data.fingerprint(), "source": portable(data.source),
                 "counts": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
                 # What loading did to the data: every unreadable file skipped, the images resized.
                 "load_report": _load_report(data)},
        "quantization": {
            **{a.name: a.spec.quantization for a, _ in shipped if a.spec.quantization},
            "calibration": result.qat.calibration(),
        },
        "selection": {
            "rule": selection.rule, "note": selection.note, "latency_model": selection.latency_model,
            "chosen": selection.chosen.name,  # the shipped student, after any feedback rounds
            "candidates": [
                {k: c.get(k) for k in ("name", "params", "flops", "predicted_size_kb", "predicted_latency_ms",
                                       "predicted_peak_memory_mb", "fits", "why_not")}
                for c in (cand.to_dict() for cand in selection.candidates)
            ],
        },
        "feedback_rounds": [dataclasses.asdict(r) for r in result.feedback_rounds],
        # The shipped model on an aarch64 board's kernels against x86 (None: no board was used).
        "verification_arm": result.arm.to_dict() if getattr(result, "arm", None) is not None else None,
        # What the build said loudly (a teacher at chance, a collapsed student): a CI reading the
        # manifest alone sees them too.
        "warnings": list(result.warnings),
        "gates": [g.to_dict() for g in result.gates],
        "seed": cfg.seed,
        "config": portable(cfg.to_dict()),
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


def _training(result) -> dict:
    """How the shipped student was distilled: under torchrun, the global batch is the per-process
    batch times the processes, and the learning rate is the one for that global batch."""
    train, cfg = result.student.train, result.config
    per_rank = train.batch_per_rank or cfg.batch_size  # a stage result stored before this was recorded
    return {"processes": train.world_size, "device": train.device, "batch_per_process": per_rank,
            "global_batch": per_rank * train.world_size, "lr": train.lr or cfg.lr, "epochs": len(train.history),
            "best_epoch": train.best_epoch}


def _init(report: dict) -> dict:
    """How the student started: from the teacher's weights (which fraction, from what) or not, and why."""
    if not report:
        return {"initialised": False, "reason": "initialisation from the teacher was off, or the teacher is not of "
                "the student's family"}
    keep = ("initialised", "family", "copied_fraction", "criterion", "source", "reason", "not_copied")
    return {k: report[k] for k in keep if k in report}
