"""``edgedistill build``: teacher -> student -> QAT -> export -> verify -> benchmark -> bundle.

Each stage is a function of its inputs and the config; its result is a small JSON document in the
run directory (see :mod:`edgedistill.rundir`), so an interrupted build resumes where it stopped and
a repeated build skips what is unchanged. Nothing reaches the bundle until every artifact passed
verification; the bundle folder appears by rename, whole.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from edgedistill import __version__
from edgedistill.config import BuildConfig
from edgedistill.data.dataset import ImageDataset
from edgedistill.distill.losses import LossWeights, parse_loss_weights
from edgedistill.distill.recipe import DEFAULT_LOSS, DEFAULT_OVERRIDES
from edgedistill.distill.trainer import TrainConfig, TrainResult, evaluate, predict_logits, train
from edgedistill.errors import BudgetError, InputError
from edgedistill.models import count_parameters, create_model, spec_from_dict, spec_to_dict
from edgedistill.progress import Reporter
from edgedistill.rundir import RunDir, stable_hash
from edgedistill.select.candidates import evaluate_candidates
from edgedistill.select.targets import Target, load_target

ARTIFACTS = ("model.tflite", "model_fp32.tflite", "model.onnx", "model_int8.onnx")


@dataclass
class StudentResult:
    """A trained student (distilled or from scratch) kept in the run directory."""

    spec: dict
    params: int
    val_acc: float
    test_acc: float
    train: dict  # TrainResult.to_dict()
    weights_file: str
    assistants: list[str] = field(default_factory=list)  # teacher-assistant chain, largest first


@dataclass
class BuildResult:
    target: Target
    config: BuildConfig
    data: ImageDataset
    teacher: dict
    selection: dict
    student: StudentResult
    scratch: StudentResult | None
    qat: dict
    export: dict
    verification: list[dict]
    benchmarks: dict[str, dict]
    loss: str = ""  # the resolved distillation loss
    augment: bool = False
    stage_seconds: dict[str, float] = field(default_factory=dict)
    bundle_dir: Path | None = None
    run_dir: Path | None = None


def check_writable(out: Path) -> None:
    """Fail before any training if the bundle could not be written."""
    probe_dir = out
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise InputError(f"--out {out}: {probe_dir} exists and is not a directory")
    if not os.access(probe_dir, os.W_OK | os.X_OK):
        raise InputError(f"--out {out} is not writable ({probe_dir} denies writing)", hint="choose another --out")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"edgedistill": __version__, "python": platform.python_version()}
    for name in ("torch", "litert-torch", "ai-edge-litert", "torchao", "onnx", "onnxruntime", "onnxscript", "onnxsim", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _load_student(result: StudentResult, stage_dir: Path) -> torch.nn.Module:
    model = create_model(spec_from_dict(result.spec))
    model.load_state_dict(load_file(str(stage_dir / result.weights_file)))
    return model.eval()


def _train_student(
    rd: RunDir, name: str, inputs: dict, spec, data: ImageDataset, cfg: TrainConfig,
    teacher, weights: LossWeights, rep: Reporter, assistant_ratio: float = float("inf"),
) -> tuple[StudentResult, torch.nn.Module]:
    stage = rd.stage(name, inputs)
    stored = stage.load()
    if stored is not None:
        result = StudentResult(**stored)
        rep.note(f"{name}: reused from {stage.dir} (test accuracy {result.test_acc:.4f})")
        return result, _load_student(result, stage.dir)
    if stage.begin():
        rep.note(f"{name}: resuming an interrupted run from {stage.dir}")
    torch.manual_seed(cfg.seed)
    model = create_model(spec)
    assistants: list[str] = []
    teacher_spec = getattr(teacher, "spec", None)
    ratio = count_parameters(teacher) / count_parameters(model) if teacher is not None else 0.0
    if teacher is not None and ratio > assistant_ratio and getattr(teacher_spec, "family", None) == spec.family:
        from edgedistill.distill.assistant import distill_chain

        chain = distill_chain(teacher, model, data, cfg, weights, ratio_threshold=assistant_ratio, label=name,
                              checkpoint_dir=stage.dir, progress=rep.epoch)
        assistants = [a.describe() if hasattr(a, "describe") else str(a) for a in chain.assistants]
        rep.note(f"teacher/student ratio {ratio:.0f}x > {assistant_ratio:g}x: distilled through "
                 f"assistant(s) {', '.join(assistants)}")
        history = chain.student_result
    else:
        if teacher is not None and ratio > assistant_ratio:
            rep.note(f"teacher/student ratio {ratio:.0f}x > {assistant_ratio:g}x, but the teacher is not of the "
                     "student's family: no assistant can be shaped between them; distilling directly")
        history = train(model, data, cfg, teacher=teacher, weights=weights, label=name,
                        checkpoint_dir=stage.dir, progress=rep.epoch)
    x_test, y_test = torch.from_numpy(data.inputs("test")), torch.from_numpy(data.test.labels)
    save_file(model.state_dict(), str(stage.dir / "student.safetensors"))
    result = StudentResult(
        spec=spec_to_dict(spec), params=count_parameters(model), val_acc=history.best_val_acc,
        test_acc=evaluate(model, x_test, y_test), train=history.to_dict(), weights_file="student.safetensors",
        assistants=assistants,
    )
    (stage.dir / "checkpoint.pt").unlink(missing_ok=True)
    stage.save(dataclasses.asdict(result))
    return result, model


def _calibration_subset(data: ImageDataset, per_class: int, seed: int) -> np.ndarray:
    """A class-balanced representative subset of the training split (see calibration/README.md)."""
    rng = np.random.default_rng(seed)
    idx = []
    for cls in range(data.num_classes):
        members = np.flatnonzero(data.train.labels == cls)
        idx.extend(rng.choice(members, size=min(per_class, len(members)), replace=False))
    return np.sort(np.asarray(idx, dtype=np.int64))


def build(cfg: BuildConfig, rep: Reporter | None = None) -> BuildResult:
    from edgedistill.bundle.writer import write_bundle

    rep = rep or Reporter()
    started = time.perf_counter()
    target = load_target(cfg.target).with_budgets(cfg.max_latency_ms, cfg.max_size_kb)
    out_root = Path(cfg.out)
    check_writable(out_root)
    weights = parse_loss_weights(cfg.loss) if cfg.loss else dataclasses.replace(DEFAULT_LOSS)
    rd = RunDir(cfg.run_path())
    torch.manual_seed(cfg.seed)

    # --- data ----------------------------------------------------------------------------
    rep.stage("data", "loading" + (f" {cfg.data}" if cfg.data else " the built-in digits (scikit-learn)"))
    data = _load_data(cfg)
    fingerprint = data.fingerprint()
    rep.note(f"{data.name}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test, "
             f"{data.num_classes} classes, images {data.image_shape}")

    # --- teacher -------------------------------------------------------------------------
    rep.stage("teacher", cfg.teacher or "built-in residual CNN (trained on first use, then cached)")
    teacher, teacher_info = _teacher(cfg, data, rep)
    teacher_params = count_parameters(teacher)

    # --- select --------------------------------------------------------------------------
    rep.stage("select", f"student for {target.name}: >= {cfg.min_compression:g}x smaller, "
              f"int8 size <= {target.budgets.model_size_kb:g} KB")
    selection = _select(cfg, target, teacher, teacher_params, data, rep)
    student_spec = spec_from_dict(selection["chosen"]["spec"])

    # --- distill -------------------------------------------------------------------------
    augment = DEFAULT_OVERRIDES.get("augment", False) if cfg.augment is None else cfg.augment
    train_cfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                            augment=augment, device=cfg.device)
    base_inputs = {"data": fingerprint, "teacher": teacher_info["key"], "student": selection["chosen"]["spec"],
                   "train": dataclasses.asdict(train_cfg)}
    rep.stage("distill", f"{selection['chosen']['name']} ({selection['chosen']['params']:,} params) "
              f"from the teacher ({teacher_params:,}), loss {weights.to_str()}")
    student, student_model = _train_student(
        rd, "distill", {**base_inputs, "loss": weights.to_str(), "assistant_ratio": cfg.assistant_ratio},
        student_spec, data, train_cfg, teacher, weights, rep, cfg.assistant_ratio,
    )
    scratch = None
    if cfg.scratch_baseline:
        rep.stage("scratch", "the same student from labels alone, for comparison")
        scratch, _ = _train_student(rd, "scratch", {**base_inputs, "loss": "ce"}, student_spec, data, train_cfg,
                                    None, LossWeights(ce=1.0), rep)
        rep.note(f"distilled {student.test_acc:.4f} vs scratch {scratch.test_acc:.4f} test accuracy")

    # --- quantize (QAT) + int8 TFLite -----------------------------------------------------
    rep.stage("quantize", f"quantization-aware fine-tuning ({cfg.qat_epochs} epochs, teacher soft targets) "
              "and fully integer TFLite")
    qat = _quantize(rd, cfg, data, teacher, student, student_model, base_inputs, weights)
    rep.note(f"QAT torch reference test accuracy {qat['test_acc']:.4f}")

    # --- export fp32 TFLite, ONNX fp32 + int8 ---------------------------------------------
    rep.stage("export", "model_fp32.tflite, model.onnx (onnxsim), model_int8.onnx (QDQ)")
    export = _export(rd, cfg, data, student, student_model, base_inputs)

    # --- verify ----------------------------------------------------------------------------
    rep.stage("verify", "accuracy, agreement with the torch reference, dtypes, builtin kernels")
    verification = _verify(rd, data, qat, export)
    for r in verification:
        rep.note(f"{r['file']:<18} acc {r['accuracy']:.4f}  agreement {r['agreement']:.4f} vs {r['reference']}")

    # --- bench -----------------------------------------------------------------------------
    device = cfg.bench_device or target.default_device or "local"
    rep.stage("bench", f"{len(ARTIFACTS)} artifacts on {device} ({target.threads} threads, "
              f"{cfg.bench_warmup} warm-up + {cfg.bench_runs} runs)")
    benchmarks = _bench(rd, cfg, target, device, qat, export, rep)

    result = BuildResult(
        target=target, config=cfg, data=data, teacher=teacher_info, selection=selection, student=student,
        scratch=scratch, qat=qat, export=export, verification=verification, benchmarks=benchmarks,
        run_dir=rd.path, loss=weights.to_str(), augment=train_cfg.augment,
    )
    # --- bundle ----------------------------------------------------------------------------
    rep.stage("bundle", f"writing {out_root / target.name}")
    rep.finish()
    result.stage_seconds = dict(rep.stage_seconds)
    result.stage_seconds["total"] = time.perf_counter() - started
    result.bundle_dir = write_bundle(result, out_root / target.name, _versions())
    rep.note(f"bundle ready: {result.bundle_dir}")
    return result


def _load_data(cfg: BuildConfig) -> ImageDataset:
    if not cfg.data:
        from edgedistill.data.digits import load_digits_dataset

        return load_digits_dataset(seed=cfg.seed)
    from edgedistill.data.load import load_dataset

    return load_dataset(
        Path(cfg.data),
        mean=cfg.mean or None,
        std=cfg.std or None,
        image_size=tuple(cfg.image_size) if cfg.image_size else None,
        split_seed=cfg.seed,
        strict=cfg.strict,
    )


def _teacher(cfg: BuildConfig, data: ImageDataset, rep: Reporter) -> tuple[torch.nn.Module, dict]:
    x_test, y_test = torch.from_numpy(data.inputs("test")), torch.from_numpy(data.test.labels)
    if cfg.teacher:
        from edgedistill.fsutil import sha256_file
        from edgedistill.teacher.load import infer_io, load_teacher

        loaded = load_teacher(cfg.teacher, Path(cfg.weights) if cfg.weights else None)
        infer_io(loaded, data)
        module = loaded.module.eval()
        acc = evaluate(module, x_test, y_test)
        rep.note(f"user teacher: {count_parameters(module):,} params, test accuracy {acc:.4f}")
        key = stable_hash(loaded.source)
        return module, {"key": key, "params": count_parameters(module), "test_acc": acc,
                        "val_acc": None, "source": loaded.source, "cached": False,
                        "spec": spec_to_dict(module.spec) if hasattr(module, "spec") else None}
    from edgedistill.teacher.builtin import DEFAULT_TEACHER_TRAIN, builtin_teacher

    teacher_cfg = dataclasses.replace(DEFAULT_TEACHER_TRAIN, epochs=cfg.teacher_epochs, device=cfg.device)
    module, info = builtin_teacher(data, teacher_cfg, progress=rep.epoch)
    rep.note(("reused cached" if info.cached else "trained") + f" teacher: {info.params:,} params, "
             f"test accuracy {info.test_acc:.4f} ({info.source['cache']})")
    return module, {**dataclasses.asdict(info), "key": info.source["key"]}


def _select(cfg, target, teacher, teacher_params, data, rep) -> dict:
    teacher_spec = getattr(teacher, "spec", None)
    note = ""
    if teacher_spec is None or getattr(teacher_spec, "family", None) not in ("resnet", "vit"):
        # A teacher outside the zoo: students come from the zoo's residual family instead.
        from edgedistill.teacher.builtin import default_teacher_spec

        teacher_spec = default_teacher_spec(data)
        note = "teacher is outside the zoo: candidates come from the zoo's residual CNN family"
        rep.note(note)
    candidates = evaluate_candidates(teacher_spec, data.input_shape_nchw, target, teacher_params, cfg.min_compression)
    fitting = [c for c in candidates if c.fits]
    if not fitting:
        best = min(candidates, key=lambda c: c.params)
        raise BudgetError(
            f"no student of {teacher_spec.family} shaped like the teacher meets {target.name}'s budgets; "
            f"the smallest ({best.spec.describe()}, {best.params:,} params) fails: {best.why_not}",
            hint="raise --max-size-kb / --max-latency-ms or lower --min-compression",
        )
    chosen = fitting[0]
    rep.note(f"chose {chosen.spec.describe()}: {chosen.params:,} params "
             f"({teacher_params / chosen.params:.1f}x fewer), predicted int8 size {chosen.predicted_size_kb:.1f} KB")
    return {"chosen": chosen.to_dict(), "candidates": [c.to_dict() for c in candidates],
            "rule": "largest candidate (parameters, then FLOPs) that fits the budgets", "note": note}


def _quantize(rd, cfg, data, teacher, student: StudentResult, student_model, base_inputs, weights) -> dict:
    from edgedistill.export.tflite import export_tflite_int8
    from edgedistill.quantize.qat import QATConfig, qat_finetune

    qcfg = QATConfig(epochs=cfg.qat_epochs, seed=cfg.seed, temperature=weights.temperature)
    stage = rd.stage("quantize", {**base_inputs, "student_weights": student.train, "qat": dataclasses.asdict(qcfg)})
    stored = stage.load()
    if stored is not None:
        return stored
    stage.begin()
    x_train = torch.from_numpy(data.inputs("train"))
    teacher_logits = predict_logits(teacher, x_train)
    converted, quantizer, result = qat_finetune(student_model, data, teacher_logits, qcfg)
    x_test = torch.from_numpy(data.inputs("test"))
    with torch.no_grad():
        np.save(stage.dir / "reference_test_logits.npy", converted(x_test).numpy())
    export_tflite_int8(converted, quantizer, x_train[:4], stage.dir / "model.tflite")
    return stage.save({**result.to_dict(), "dir": str(stage.dir), "config": dataclasses.asdict(qcfg)})


def _export(rd, cfg, data, student: StudentResult, student_model, base_inputs) -> dict:
    from edgedistill.export.onnx import export_onnx_fp32, quantize_onnx_int8
    from edgedistill.export.tflite import export_tflite_fp32

    stage = rd.stage("export", {**base_inputs, "student_weights": student.train,
                                "calibration_per_class": cfg.calibration_per_class})
    stored = stage.load()
    if stored is not None:
        return stored
    stage.begin()
    x_train = torch.from_numpy(data.inputs("train"))
    x_test = torch.from_numpy(data.inputs("test"))
    with torch.no_grad():
        np.save(stage.dir / "reference_test_logits.npy", student_model.eval()(x_test).numpy())
    export_tflite_fp32(student_model, x_train[:4], stage.dir / "model_fp32.tflite")
    export_onnx_fp32(student_model, x_train[:4], stage.dir / "model.onnx")
    calib_idx = _calibration_subset(data, cfg.calibration_per_class, cfg.seed)
    quantize_onnx_int8(stage.dir / "model.onnx", data.inputs("train")[calib_idx], stage.dir / "model_int8.onnx")
    return stage.save({
        "dir": str(stage.dir),
        "calibration": {"split": "train", "per_class": cfg.calibration_per_class, "seed": cfg.seed,
                        "count": int(len(calib_idx)), "method": "onnxruntime quantize_static MinMax, QDQ, per-channel"},
    })


def _artifact_paths(qat: dict, export: dict) -> dict[str, Path]:
    return {
        "model.tflite": Path(qat["dir"]) / "model.tflite",
        "model_fp32.tflite": Path(export["dir"]) / "model_fp32.tflite",
        "model.onnx": Path(export["dir"]) / "model.onnx",
        "model_int8.onnx": Path(export["dir"]) / "model_int8.onnx",
    }


def _verify(rd, data, qat, export) -> list[dict]:
    from edgedistill.verify.checks import VerifyThresholds, require_all_passed, verify_artifact

    th = VerifyThresholds()
    paths = _artifact_paths(qat, export)
    ref_int8 = np.load(Path(qat["dir"]) / "reference_test_logits.npy")
    ref_fp32 = np.load(Path(export["dir"]) / "reference_test_logits.npy")
    plan = [
        ("model.tflite", "int8", ref_int8, "torch QAT (PT2E converted) student", th.min_agreement_int8_tflite),
        ("model_fp32.tflite", "fp32", ref_fp32, "torch fp32 student", th.min_agreement_fp32),
        ("model.onnx", "fp32", ref_fp32, "torch fp32 student", th.min_agreement_fp32),
        ("model_int8.onnx", "int8", ref_fp32, "torch fp32 student", th.min_agreement_int8_onnx),
    ]
    reports = [verify_artifact(paths[name], prec, data, ref, refname, thr) for name, prec, ref, refname, thr in plan]
    require_all_passed(reports)
    stage = rd.stage("verify", {"qat": qat, "export": export})
    stage.begin()
    return stage.save({"reports": [r.to_dict() for r in reports]})["reports"]


def _bench(rd, cfg, target, device, qat, export, rep) -> dict[str, dict]:
    from edgedistill.bench import LatencyStore, bench_model

    results = {}
    store = LatencyStore()
    for name, path in _artifact_paths(qat, export).items():
        delegate = target.delegate if path.suffix == ".tflite" else "cpu"
        m = bench_model(path, device, threads=target.threads, delegate=delegate,
                        warmup=cfg.bench_warmup, runs=cfg.bench_runs)
        store.append(m)
        results[name] = m.to_dict()
        rep.note(f"{name:<18} median {m.median_ms * 1000:8.1f} us  p90 {m.p90_ms * 1000:8.1f} us  ({m.runtime})")
    stage = rd.stage("bench", {"qat": qat, "export": export, "device": device})
    stage.begin()
    stage.save(results)
    return results
