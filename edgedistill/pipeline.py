"""``edgedistill build``: teacher -> student -> QAT -> export -> verify -> benchmark -> bundle.

Each stage is a function of its inputs and the config; its result is a small JSON document in the
run directory (see :mod:`edgedistill.rundir`), so an interrupted build resumes where it stopped and
a repeated build skips what is unchanged. Nothing reaches the bundle until every artifact passed
verification; the bundle folder appears by rename, whole.
"""

from __future__ import annotations

import dataclasses
import platform
import tempfile
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
from edgedistill.distill.trainer import TrainConfig, evaluate, predict_logits, train
from edgedistill.errors import BudgetError, InputError
from edgedistill.models import count_parameters, create_model, spec_from_dict, spec_to_dict
from edgedistill.progress import Reporter
from edgedistill.rundir import RunDir, stable_hash
from edgedistill.gates import GateConfig, check_gates
from edgedistill.select.latency_model import latency_model_for
from edgedistill.select.targets import Target, load_target

ARTIFACTS = ("model.tflite", "model_fp32.tflite", "model.onnx", "model_int8.onnx")
EXPORT_FILES = ("model_fp32.tflite", "model.onnx", "model_int8.onnx", "reference_test_logits.npy")


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
    init: dict = field(default_factory=dict)  # how the student was initialised from the teacher


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
    feedback_rounds: list[dict] = field(default_factory=list)
    gates: list = field(default_factory=list)
    loss: str = ""  # the resolved distillation loss
    augment: bool = False
    stage_seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # said loudly during the build; kept in manifest and report
    bundle_dir: Path | None = None
    run_dir: Path | None = None

    def artifact_paths(self) -> dict[str, Path]:
        """Where the verified artifacts of the shipped student are, in the run directory."""
        return _artifact_paths(self.qat, self.export)


def check_writable(out: Path) -> None:
    """Fail before any training if the bundle could not be written: create and remove a folder
    where the bundle will go (``os.access`` says yes to root even where writing fails)."""
    probe_dir = out
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise InputError(f"--out {out}: {probe_dir} exists and is not a directory", hint="choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        Path(tempfile.mkdtemp(prefix=".edgedistill-write-check.", dir=out)).rmdir()
    except OSError as exc:
        raise InputError(f"--out {out} is not writable: {exc.strerror or exc}", hint="choose another --out") from exc


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
    rd: RunDir, stage_name: str, inputs: dict, spec, data: ImageDataset, cfg: TrainConfig,
    teacher, weights: LossWeights, rep: Reporter, *, label: str, assistant_ratio: float = float("inf"),
    init_from_teacher: bool = False,
) -> tuple[StudentResult, torch.nn.Module]:
    stage = rd.stage(stage_name, inputs)
    stored = stage.load(files=("student.safetensors",))
    if stored is not None:
        try:
            result = StudentResult(**stored)
            model = _load_student(result, stage.dir)
        except (TypeError, KeyError, ValueError, RuntimeError, OSError):
            stored = None  # a damaged stage result: train again
        else:
            rep.note(f"{label}: reused from {stage.dir} (test accuracy {result.test_acc:.4f})")
            return result, model
    if stage.begin():
        rep.note(f"{label}: resuming an interrupted run from {stage.dir}")
    torch.manual_seed(cfg.seed)
    model = create_model(spec)
    init_report: dict = {}
    if init_from_teacher and teacher is not None and getattr(getattr(teacher, "spec", None), "family", None) == spec.family:
        from edgedistill.select.init_from_teacher import init_student_from_teacher

        # DistilBERT-style head start: evenly spaced blocks, most important channels/heads.
        init_report = init_student_from_teacher(teacher, model, sample=torch.from_numpy(data.inputs("train")[:512]))
        rep.note(f"{label}: initialised from the teacher ({init_report.get('criterion', 'see run directory')})")
    assistants: list[str] = []
    teacher_spec = getattr(teacher, "spec", None)
    ratio = count_parameters(teacher) / count_parameters(model) if teacher is not None else 0.0
    if teacher is not None and ratio > assistant_ratio and getattr(teacher_spec, "family", None) == spec.family:
        from edgedistill.distill.assistant import distill_chain

        chain = distill_chain(teacher, model, data, cfg, weights, ratio_threshold=assistant_ratio, label=label,
                              checkpoint_dir=stage.dir, progress=rep.epoch)
        assistants = [a.describe() if hasattr(a, "describe") else str(a) for a in chain.assistants]
        rep.note(f"teacher/student ratio {ratio:.0f}x > {assistant_ratio:g}x: distilled through "
                 f"assistant(s) {', '.join(assistants)}")
        history = chain.student_result
    else:
        if teacher is not None and ratio > assistant_ratio:
            rep.note(f"teacher/student ratio {ratio:.0f}x > {assistant_ratio:g}x, but the teacher is not of the "
                     "student's family: no assistant can be shaped between them; distilling directly")
        history = train(model, data, cfg, teacher=teacher, weights=weights, label=label,
                        checkpoint_dir=stage.dir, progress=rep.epoch)
    x_test, y_test = torch.from_numpy(data.inputs("test")), torch.from_numpy(data.test.labels)
    save_file(model.state_dict(), str(stage.dir / "student.safetensors"))
    result = StudentResult(
        spec=spec_to_dict(spec), params=count_parameters(model), val_acc=history.best_val_acc,
        test_acc=evaluate(model, x_test, y_test), train=history.to_dict(), weights_file="student.safetensors",
        assistants=assistants, init=init_report,
    )
    stage.save(dataclasses.asdict(result))
    (stage.dir / "checkpoint.pt").unlink(missing_ok=True)
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
    latency_model_for(target)  # a target with no usable calibration is refused here, before any work
    out_root = Path(cfg.out)
    check_writable(out_root)
    weights = parse_loss_weights(cfg.loss) if cfg.loss else dataclasses.replace(DEFAULT_LOSS)
    gate_cfg = GateConfig.from_build_config(cfg)
    rd = RunDir(cfg.run_path())
    torch.manual_seed(cfg.seed)
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        rep.warn(message)

    # A user's teacher is checked (file, factory, weights) before a large dataset is read.
    loaded_teacher = _load_user_teacher(cfg)

    # --- data ----------------------------------------------------------------------------
    rep.stage("data", "loading" + (f" {cfg.data}" if cfg.data else " the built-in digits (scikit-learn)"))
    data = _load_data(cfg)
    fingerprint = data.fingerprint()
    rep.note(f"{data.name}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test, "
             f"{data.num_classes} classes, images {data.image_shape}")
    for line in data.load_report.lines():  # skipped unreadable files, resized images
        rep.warn(line)

    # --- teacher -------------------------------------------------------------------------
    rep.stage("teacher", cfg.teacher or "built-in residual CNN (trained on first use, then cached)")
    teacher, teacher_info = _teacher(cfg, data, rep, loaded_teacher)
    teacher_params = count_parameters(teacher)
    teacher_gate = _check_teacher(cfg, teacher_info, data, warn)

    # --- select --------------------------------------------------------------------------
    rep.stage("select", f"student for {target.name}: >= {cfg.min_compression:g}x smaller, within "
              f"{target.budgets.latency_ms:g} ms, {target.budgets.model_size_kb:g} KB, "
              f"{target.budgets.peak_memory_mb:g} MB")
    selection = _select(cfg, target, teacher, teacher_params, data, rep)

    augment = DEFAULT_OVERRIDES.get("augment", False) if cfg.augment is None else cfg.augment
    train_cfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                            augment=augment, device=cfg.device)
    device = cfg.bench_device or target.default_device or "local"
    # Measured latency only steers the choice when it was measured where the target runs: on a
    # device of the target, or on this host for the host target.
    feedback = device != "local" or target.device_kind == "local"
    budget = target.budgets.latency_ms
    candidate = selection.chosen
    measured: dict[str, float] = {}
    rounds: list[dict] = []
    for round_no in range(1, cfg.max_rounds + 1):
        r = _student_round(rd, cfg, target, data, teacher, teacher_info, fingerprint, candidate, weights,
                           train_cfg, device, rep, round_no)
        latency = r["benchmarks"]["model.tflite"]["median_ms"]
        if not feedback:
            rep.note(f"latency measured on this host, not on a {target.name} device: it is reported, "
                     "not used to re-choose the student (benchmark on a device with --bench-device)")
            break
        rounds.append({"round": round_no, "candidate": candidate.name, "params": candidate.params,
                       "predicted_ms": candidate.predicted_latency_ms, "measured_ms": latency,
                       "budget_ms": budget, "within_budget": latency <= budget,
                       "accuracy": r["verification"][0]["accuracy"], "measured_on": device})
        measured[candidate.key] = latency
        if latency <= budget:
            rep.note(f"round {round_no}: {candidate.name} measured {latency:.4g} ms <= budget {budget:g} ms")
            break
        candidate = _next_candidate(target, selection, measured, budget, rounds, rep)
    else:
        best = min(rounds, key=lambda x: x["measured_ms"])
        raise BudgetError(
            f"after {cfg.max_rounds} rounds no student met {target.name}'s latency budget of {budget:g} ms as "
            f"measured on {device}; the fastest was {best['candidate']} at {best['measured_ms']:.4g} ms",
            hint="raise --max-latency-ms or --max-rounds, or benchmark on a quieter device",
        )
    student = r["student"]
    _check_student(r["student_model"], student, data, warn)

    scratch = None
    if cfg.scratch_baseline:
        rep.stage("scratch", "the same student from labels alone, for comparison")
        scratch, _ = _train_student(rd, f"{candidate.tag}/scratch", {**r["inputs"], "loss": "ce"},
                                    candidate.spec, data, train_cfg, None, LossWeights(ce=1.0), rep, label="scratch")
        rep.note(f"distilled {student.test_acc:.4f} vs scratch {scratch.test_acc:.4f} test accuracy")

    selection.chosen = candidate  # the student that ships (after any feedback rounds)
    result = BuildResult(
        target=target, config=cfg, data=data, teacher=teacher_info, selection=selection.to_dict(),
        student=student, scratch=scratch, qat=r["qat"], export=r["export"], verification=r["verification"],
        benchmarks=r["benchmarks"], run_dir=rd.path, loss=weights.to_str(), augment=train_cfg.augment,
        feedback_rounds=rounds, warnings=warnings, gates=[teacher_gate] if teacher_gate else [],
    )
    # --- gates: the measured result against the release's requirements --------------------
    if gate_cfg.any:
        rep.stage("gates", "checking the measured result")
        result.gates += check_gates(_preview_manifest(result), gate_cfg)  # raises GateFailed (exit 4)
        for g in result.gates:
            rep.note(g.reason)
    # --- bundle ----------------------------------------------------------------------------
    rep.stage("bundle", f"writing {out_root / target.name}")
    rep.finish()
    result.stage_seconds = dict(rep.stage_seconds)
    result.stage_seconds["total"] = time.perf_counter() - started
    result.bundle_dir = write_bundle(result, out_root / target.name, _versions())
    rep.note(f"bundle ready: {result.bundle_dir}")
    return result


def _student_round(rd, cfg, target, data, teacher, teacher_info, fingerprint, candidate, weights, train_cfg,
                   device, rep, round_no) -> dict:
    """Distil, quantize, export, verify and benchmark one candidate student."""
    tag = candidate.tag
    inputs = {"data": fingerprint, "teacher": teacher_info["key"], "student": spec_to_dict(candidate.spec),
              "train": dataclasses.asdict(train_cfg), "init_from_teacher": cfg.init_from_teacher,
              "edgedistill": __version__, "torch": torch.__version__}
    prefix = f"round {round_no}: " if round_no > 1 else ""
    rep.stage("distill", f"{prefix}{candidate.name} ({candidate.params:,} params) from the teacher "
              f"({count_parameters(teacher):,}), loss {weights.to_str()}")
    student, student_model = _train_student(
        rd, f"{tag}/distill", {**inputs, "loss": weights.to_str(), "assistant_ratio": cfg.assistant_ratio},
        candidate.spec, data, train_cfg, teacher, weights, rep, label="distill",
        assistant_ratio=cfg.assistant_ratio, init_from_teacher=cfg.init_from_teacher,
    )
    rep.stage("quantize", f"quantization-aware fine-tuning ({cfg.qat_epochs} epochs, teacher soft targets) "
              "and fully integer TFLite")
    qat = _quantize(rd, tag, cfg, data, teacher, student, student_model, inputs, weights)
    rep.note(f"QAT torch reference test accuracy {qat['test_acc']:.4f}")
    rep.stage("export", "model_fp32.tflite, model.onnx (onnxsim), model_int8.onnx (QDQ)")
    export = _export(rd, tag, cfg, data, student, student_model, inputs)
    rep.stage("verify", "accuracy, agreement with the torch reference, dtypes, builtin kernels")
    verification = _verify(data, qat, export)
    for v in verification:
        rep.note(f"{v['file']:<18} acc {v['accuracy']:.4f}  agreement {v['agreement']:.4f} vs {v['reference']}")
    rep.stage("bench", f"{len(ARTIFACTS)} artifacts on {device} ({_bench_threads_word(target, device)}, "
              f"{cfg.bench_warmup} warm-up + {cfg.bench_runs} runs)")
    benchmarks = _bench(cfg, target, device, qat, export, candidate, data, rep)
    return {"student": student, "student_model": student_model, "qat": qat, "export": export,
            "verification": verification, "benchmarks": benchmarks, "inputs": inputs}


def _bench_threads_word(target: Target, device: str) -> str:
    from edgedistill.bench.threads import bench_threads

    t = bench_threads(target.threads, device)
    return f"{t.threads} threads" + (f", capped from the target's {t.requested} to this host's cores" if t.capped else "")


def _next_candidate(target, selection, measured, budget, rounds, rep):
    """Refit the target's latency model with what was measured and choose again."""
    from edgedistill.bench import LatencyStore
    from edgedistill.select.calibrate import matching_measurements, refit_from_measurement
    from edgedistill.select.candidates import next_choice

    model = refit_from_measurement(target, matching_measurements(target, LatencyStore().records()))
    nxt = next_choice(selection.candidates, measured, budget, latency_model=model,
                      precision=target.precision, threads=target.threads)
    last = rounds[-1]
    if nxt is None:
        best = min(rounds, key=lambda x: x["measured_ms"])
        raise BudgetError(
            f"{last['candidate']} measured {last['measured_ms']:.4g} ms > {target.name}'s budget {budget:g} ms and no "
            f"smaller candidate is predicted to fit; the best measured was {best['candidate']} at "
            f"{best['measured_ms']:.4g} ms",
            hint="raise --max-latency-ms, or lower --min-compression to allow other students",
        )
    rep.note(f"round {last['round']}: {last['candidate']} measured {last['measured_ms']:.4g} ms > budget "
             f"{budget:g} ms; latency model refitted; next: {nxt.name} (predicted "
             f"{nxt.predicted_latency_ms if nxt.predicted_latency_ms is None else round(nxt.predicted_latency_ms, 4)} ms)")
    return nxt


def _preview_manifest(result: "BuildResult") -> dict:
    """The manifest as it will be written, for gates to read before anything reaches the bundle."""
    from edgedistill.bundle.manifest import build_manifest
    from edgedistill.fsutil import sha256_file

    files = {n: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
             for n, p in result.artifact_paths().items()}
    return build_manifest(result, _versions(), files)


def _load_data(cfg: BuildConfig) -> ImageDataset:
    if not cfg.data:
        ignored = [flag for flag, value in (("--mean", cfg.mean), ("--std", cfg.std), ("--image-size", cfg.image_size),
                                            ("--strict", cfg.strict), ("--channels", cfg.channels)) if value]
        if ignored:
            raise InputError(f"{', '.join(ignored)} only apply to --data; the built-in digits have fixed preprocessing",
                             hint="give --data PATH, or drop those options")
        from edgedistill.data.digits import load_digits_dataset

        return load_digits_dataset(seed=cfg.seed)
    from edgedistill.data.load import load_dataset

    return load_dataset(
        Path(cfg.data),
        mean=cfg.mean or None,
        std=cfg.std or None,
        image_size=tuple(cfg.image_size) if cfg.image_size else None,
        channels=cfg.channels,
        split_seed=cfg.seed,
        strict=cfg.strict,
    )


def _load_user_teacher(cfg: BuildConfig):
    """The user's teacher (``--teacher``/``--weights``) loaded, or None for the built-in one."""
    if not cfg.teacher:
        if cfg.weights:
            raise InputError("--weights only applies to --teacher (a factory's weights)",
                             hint="give --teacher FILE.py:FUNCTION, or drop --weights")
        return None
    from edgedistill.teacher.load import load_teacher

    return load_teacher(cfg.teacher, Path(cfg.weights) if cfg.weights else None)


def _teacher(cfg: BuildConfig, data: ImageDataset, rep: Reporter, loaded=None) -> tuple[torch.nn.Module, dict]:
    x_test, y_test = torch.from_numpy(data.inputs("test")), torch.from_numpy(data.test.labels)
    if loaded is not None:
        from edgedistill.teacher.load import infer_io

        infer_io(loaded, data)
        module = loaded.module.eval()
        acc = evaluate(module, x_test, y_test)
        val_acc = evaluate(module, torch.from_numpy(data.inputs("val")), torch.from_numpy(data.val.labels))
        rep.note(f"user teacher: {count_parameters(module):,} params, test accuracy {acc:.4f}, "
                 f"validation {val_acc:.4f}")
        key = stable_hash(loaded.source)
        return module, {"key": key, "params": count_parameters(module), "test_acc": acc,
                        "val_acc": val_acc, "source": loaded.source, "cached": False,
                        "spec": spec_to_dict(module.spec) if hasattr(module, "spec") else None}
    from edgedistill.teacher.builtin import DEFAULT_TEACHER_TRAIN, builtin_teacher

    teacher_cfg = dataclasses.replace(DEFAULT_TEACHER_TRAIN, epochs=cfg.teacher_epochs, device=cfg.device)
    module, info = builtin_teacher(data, teacher_cfg, progress=rep.epoch)
    rep.note(("reused cached" if info.cached else "trained") + f" teacher: {info.params:,} params, "
             f"test accuracy {info.test_acc:.4f} ({info.source['cache']})")
    return module, {**dataclasses.asdict(info), "key": info.source["key"]}


def _check_teacher(cfg: BuildConfig, teacher_info: dict, data: ImageDataset, warn):
    """Say loudly when the teacher is at chance on the validation split (a student distilled from
    it learns nothing, yet every later check would pass), and apply --min-teacher-accuracy."""
    from edgedistill.gates import check_teacher_gate
    from edgedistill.quality import chance_check

    val_acc = teacher_info.get("val_acc")
    if val_acc is None:
        return None
    check = chance_check(val_acc, data.val.labels)
    if check.near_chance:
        warn(f"the teacher is at chance: {100 * val_acc:.1f}% on the validation split ({check.n} images) "
             f"against {100 * check.chance:.1f}% for always answering the commonest class; a student "
             "distilled from it learns nothing (untrained weights, the wrong --weights, or other "
             "preprocessing than it was trained with: check --mean/--std)")
    if cfg.gate_min_teacher_accuracy is None:
        return None
    return check_teacher_gate(val_acc, cfg.gate_min_teacher_accuracy)  # raises GateFailed (exit 4)


def _check_student(model: torch.nn.Module, student: StudentResult, data: ImageDataset, warn) -> None:
    """Say loudly when the distilled student answers (almost) one class: top-1 agreement between
    its artifacts is then 100% and means nothing."""
    from edgedistill.quality import collapse_check

    pred = predict_logits(model, torch.from_numpy(data.inputs("test"))).argmax(1).numpy()
    check = collapse_check(pred, data.num_classes)
    if check.collapsed:
        warn(f"the distilled student has collapsed: on the test split it {check.describe()}, at "
             f"{100 * student.test_acc:.1f}% accuracy; its artifacts' agreement says nothing about quality")


def _select(cfg, target, teacher, teacher_params, data, rep):
    from edgedistill.export.tflite import fully_integer_problem
    from edgedistill.select.candidates import select_student, zoo_teacher_spec

    c, _, _ = data.input_shape_nchw
    teacher_spec, note = zoo_teacher_spec(teacher, c, data.num_classes)
    if note:
        rep.note(note)
    problem = fully_integer_problem(teacher_spec) if target.precision == "int8" else ""
    if problem:  # checked before any training: the students keep the teacher's family
        raise InputError(
            f"the teacher is a zoo {teacher_spec.family} model, so its students would be too, and {target.name} "
            f"ships a fully integer model: {problem}",
            hint="distil into a CNN instead: pass the teacher as a factory whose class is not a zoo model "
                 "(it then gets inverted-residual students)",
        )
    sel = select_student(teacher_spec, data.input_shape_nchw, target, teacher_params, cfg.min_compression, note=note)
    if sel.chosen is None:
        best = min(sel.candidates, key=lambda x: x.params)
        raise BudgetError(
            f"no student shaped like the teacher meets {target.name}'s budgets; the smallest "
            f"({best.name}, {best.params:,} params) fails: {best.why_not}",
            hint="raise --max-size-kb / --max-latency-ms or lower --min-compression",
        )
    ch = sel.chosen
    lat = "n/a" if ch.predicted_latency_ms is None else f"{ch.predicted_latency_ms:.4g} ms"
    rep.note(f"chose {ch.name}: {ch.params:,} params ({teacher_params / ch.params:.1f}x fewer), predicted "
             f"int8 size {ch.predicted_size_kb:.1f} KB, latency {lat} ({sel.latency_model})")
    return sel


def _quantize(rd, tag, cfg, data, teacher, student: StudentResult, student_model, base_inputs, weights) -> dict:
    from edgedistill.export.tflite import dynamic_batch_exports, export_tflite_int8
    from edgedistill.quantize.qat import QATConfig, qat_finetune

    qcfg = QATConfig(epochs=cfg.qat_epochs, seed=cfg.seed, temperature=weights.temperature)
    stage = rd.stage(f"{tag}/quantize", {**base_inputs, "student_weights": _weights_digest(rd, tag),
                                         "qat": dataclasses.asdict(qcfg), "versions": _versions()})
    stored = stage.load(files=("model.tflite", "reference_test_logits.npy"))
    if stored is not None:
        return {**stored, "dir": str(stage.dir)}  # the folder as it is now (run directories move)
    stage.begin()
    x_train = torch.from_numpy(data.inputs("train"))
    teacher_logits = predict_logits(teacher, x_train)
    converted, quantizer, result = qat_finetune(student_model, data, teacher_logits, qcfg)
    x_test = torch.from_numpy(data.inputs("test"))
    with torch.no_grad():
        np.save(stage.dir / "reference_test_logits.npy", converted(x_test).numpy())
    export_tflite_int8(converted, quantizer, x_train[:4], stage.dir / "model.tflite",
                       dynamic_batch=dynamic_batch_exports(student_model.spec))
    stage.save({**result.to_dict(), "config": dataclasses.asdict(qcfg)})
    return {**result.to_dict(), "config": dataclasses.asdict(qcfg), "dir": str(stage.dir)}


def _export(rd, tag, cfg, data, student: StudentResult, student_model, base_inputs) -> dict:
    from edgedistill.export.onnx import export_onnx_fp32, quantize_onnx_int8
    from edgedistill.export.tflite import dynamic_batch_exports, export_tflite_fp32

    stage = rd.stage(f"{tag}/export", {**base_inputs, "student_weights": _weights_digest(rd, tag),
                                       "calibration_per_class": cfg.calibration_per_class, "versions": _versions()})
    stored = stage.load(files=EXPORT_FILES)
    if stored is not None:
        return {**stored, "dir": str(stage.dir)}
    stage.begin()
    x_train = torch.from_numpy(data.inputs("train"))
    x_test = torch.from_numpy(data.inputs("test"))
    with torch.no_grad():
        np.save(stage.dir / "reference_test_logits.npy", student_model.eval()(x_test).numpy())
    export_tflite_fp32(student_model, x_train[:4], stage.dir / "model_fp32.tflite",
                       dynamic_batch=dynamic_batch_exports(student_model.spec))
    export_onnx_fp32(student_model, x_train[:4], stage.dir / "model.onnx")
    calib_idx = _calibration_subset(data, cfg.calibration_per_class, cfg.seed)
    quantize_onnx_int8(stage.dir / "model.onnx", data.inputs("train")[calib_idx], stage.dir / "model_int8.onnx")
    result = {"calibration": {"split": "train", "per_class": cfg.calibration_per_class, "seed": cfg.seed,
                              "count": int(len(calib_idx)),
                              "method": "onnxruntime quantize_static MinMax, QDQ, per-channel"}}
    stage.save(result)
    return {**result, "dir": str(stage.dir)}


def _weights_digest(rd: RunDir, tag: str) -> str:
    """What the later stages of a student depend on: its weights, by content."""
    from edgedistill.fsutil import sha256_file

    return sha256_file(rd.path / tag / "distill" / "student.safetensors")


def _artifact_paths(qat: dict, export: dict) -> dict[str, Path]:
    return {
        "model.tflite": Path(qat["dir"]) / "model.tflite",
        "model_fp32.tflite": Path(export["dir"]) / "model_fp32.tflite",
        "model.onnx": Path(export["dir"]) / "model.onnx",
        "model_int8.onnx": Path(export["dir"]) / "model_int8.onnx",
    }


def _verify(data, qat, export) -> list[dict]:
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
    return [r.to_dict() for r in reports]


def _bench(cfg, target, device, qat, export, candidate, data, rep) -> dict[str, dict]:
    from edgedistill.bench import LatencyStore, bench_model

    from edgedistill.bench.threads import bench_threads

    results = {}
    store = LatencyStore()
    threads = bench_threads(target.threads, device)
    if threads.capped:
        rep.note(threads.note())
    for name, path in _artifact_paths(qat, export).items():
        delegate = target.delegate if path.suffix == ".tflite" else "cpu"
        m = bench_model(path, device, threads=threads.threads, delegate=delegate,
                        warmup=cfg.bench_warmup, runs=cfg.bench_runs)
        # What the latency model needs to refit from this measurement.
        m.extra.update(spec=spec_to_dict(candidate.spec), input_shape=list(data.input_shape_nchw),
                       precision="int8" if name in ("model.tflite", "model_int8.onnx") else "fp32",
                       target=target.name)
        store.append(m)
        results[name] = m.to_dict()
        rep.note(f"{name:<18} median {m.median_ms * 1000:8.1f} us  p90 {m.p90_ms * 1000:8.1f} us  ({m.runtime})")
    return results
