"""``edgedistill build``: the stages in order, and the result they add up to.

data -> teacher -> select -> distill -> quantize -> export -> verify -> bench (-> refit and
re-choose) -> scratch baseline -> gates -> bundle. Each stage lives in :mod:`edgedistill.stages`;
this module only sequences them. Nothing reaches the bundle until every artifact passed
verification; the bundle folder appears by rename, whole.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edgedistill.artifacts import Artifact
from edgedistill.bench.measurement import Measurement
from edgedistill.config import BuildConfig
from edgedistill.data.dataset import ImageDataset
from edgedistill.distill.losses import LossWeights, parse_loss_weights
from edgedistill.distill.recipe import DEFAULT_LOSS, DEFAULT_OVERRIDES
from edgedistill.distill.trainer import TrainConfig
from edgedistill.errors import InputError
from edgedistill.gates import GateConfig, GateResult, check_gates
from edgedistill.hardware.latency_model import latency_model_for
from edgedistill.hardware.targets import Target, load_target
from edgedistill.models import count_parameters
from edgedistill.progress import Reporter
from edgedistill.rundir import RunDir
from edgedistill.select.candidates import Selection
from edgedistill.stages.context import BuildContext, versions
from edgedistill.stages.data import load_data
from edgedistill.stages.export import ExportResult
from edgedistill.stages.arm import arm_stage
from edgedistill.stages.feedback import measured_choice
from edgedistill.stages.quantize import QuantizeResult
from edgedistill.stages.select import FeedbackRound, select_stage
from edgedistill.stages.student import StudentResult, check_student, train_student
from edgedistill.stages.teacher import TeacherInfo, check_teacher, load_user_teacher, teacher_stage
from edgedistill.verify.arm import ArmParity
from edgedistill.verify.checks import ArtifactReport


@dataclass
class BuildResult:
    """Everything the bundle, its manifest and its reports are written from."""

    target: Target
    config: BuildConfig
    data: ImageDataset
    teacher: TeacherInfo
    selection: Selection  # its ``chosen`` is the student that ships, after any feedback rounds
    student: StudentResult
    scratch: StudentResult | None
    qat: QuantizeResult
    export: ExportResult
    verification: list[ArtifactReport]  # one per artifact, in artifact order
    benchmarks: dict[str, Measurement]  # by artifact name
    feedback_rounds: list[FeedbackRound] = field(default_factory=list)
    gates: list[GateResult] = field(default_factory=list)
    loss: str = ""  # the resolved distillation loss
    augment: bool = False
    stage_seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # said loudly during the build; kept in manifest and report
    arm: ArmParity | None = None  # the shipped model on an aarch64 board's kernels, when one was used
    bundle_dir: Path | None = None
    run_dir: Path | None = None

    @property
    def artifacts(self) -> list[Artifact]:
        """The verified artifacts of the shipped student, in the run directory."""
        return self.qat.artifacts() + self.export.artifacts()

    def artifact_paths(self) -> dict[str, Path]:
        return {a.name: a.path for a in self.artifacts if a.spec.ships}


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


TRAINING_DEVICES = ("auto", "cpu", "cuda", "cuda:N")


def check_devices(cfg: BuildConfig, target: Target) -> None:
    """Every device the build names, refused now if it cannot work, not after training: the training
    device, the benchmark device and the ARM board (their specs and devices.toml names are parsed;
    reaching them stays with the bench and ARM stages)."""
    from edgedistill.bench.devices import resolve_device

    check_training_device(cfg.device)
    arm_board = "" if cfg.arm_board in ("", "off") else cfg.arm_board
    for what, spec in (("--bench-device", cfg.bench_device), (f"target {target.name}'s device", target.default_device),
                       ("--arm-board", arm_board)):
        if not spec:
            continue
        try:
            resolve_device(spec)
        except InputError as exc:
            raise InputError(f"{what}: {exc.message}", hint=exc.hint) from exc


def check_training_device(name: str) -> None:
    """``--device``: one of :data:`TRAINING_DEVICES`, and CUDA only where this torch has it and sees
    the GPU (torch would fail with a traceback after the data, the teacher and the selection)."""
    import re

    if name in ("auto", "cpu"):
        return
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise InputError(f"--device {name!r} is not a training device",
                         hint=f"use one of {', '.join(TRAINING_DEVICES)}")
    if torch.version.cuda is None:
        raise InputError(f"--device {name}: the installed torch {torch.__version__} is a CPU-only build, "
                         "without CUDA", hint="use --device cpu (or auto), or install a CUDA build of torch 2.13.x")
    count = torch.cuda.device_count()
    if count == 0:
        raise InputError(f"--device {name}: torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU",
                         hint="check the driver and CUDA_VISIBLE_DEVICES, or use --device cpu")
    if match.group(1) is not None and int(match.group(1)) >= count:
        raise InputError(f"--device {name}: torch sees {count} GPU(s), cuda:0 to cuda:{count - 1}")


def build(cfg: BuildConfig, rep: Reporter | None = None) -> BuildResult:
    from edgedistill.bundle.writer import write_bundle

    rep = rep or Reporter()
    started = time.perf_counter()
    # Everything that can be refused is refused before any work: target, its latency model, --out,
    # the loss, the gates, and a user's teacher (file, factory, weights) before a large dataset.
    target = load_target(cfg.target).with_budgets(cfg.max_latency_ms, cfg.max_size_kb)
    latency_model_for(target)
    out_root = Path(cfg.out)
    check_writable(out_root)
    weights = parse_loss_weights(cfg.loss) if cfg.loss else dataclasses.replace(DEFAULT_LOSS)
    gate_cfg = GateConfig.from_build_config(cfg)
    rd = RunDir(cfg.run_path())
    torch.manual_seed(cfg.seed)
    check_devices(cfg, target)
    loaded_teacher = load_user_teacher(cfg)

    data = load_data(cfg, rep)
    teacher, teacher_info, recognised = teacher_stage(cfg, data, rep, loaded_teacher)
    augment = DEFAULT_OVERRIDES.get("augment", False) if cfg.augment is None else cfg.augment
    ctx = BuildContext(
        cfg=cfg, target=target, data=data, teacher=teacher, teacher_info=teacher_info, weights=weights,
        train_cfg=TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                              augment=augment, flip=cfg.flip, device=cfg.device,
                              sync_batchnorm=cfg.sync_batchnorm),
        device=cfg.bench_device or target.default_device or "local", rd=rd, rep=rep,
        seed_teacher=recognised.twin if recognised is not None and recognised.twin is not None else teacher,
    )
    teacher_gate = check_teacher(cfg, teacher_info, data, ctx.warn)
    selection = select_stage(cfg, target, teacher, count_parameters(teacher), data, rep, recognised)

    r, candidate, rounds = measured_choice(ctx, selection)
    data = r.ctx.data  # the data as the chosen student sees it (at its resolution)
    check_student(r.export.reference_logits(), r.student, data, ctx.warn)
    arm = arm_stage(r.ctx, r.artifacts)  # raises VerificationError (exit 3) above the tolerance
    scratch = None
    if cfg.scratch_baseline:
        rep.stage("scratch", "the same student from labels alone, for comparison")
        scratch, _ = train_student(rd, f"{candidate.tag}/scratch", {**r.inputs, "loss": "ce"}, candidate.spec,
                                   r.ctx.full_data, ctx.train_cfg, None, LossWeights(ce=1.0), rep, label="scratch",
                                   student_size=r.ctx.student_size)
        rep.note(f"distilled {r.student.test_acc:.4f} vs scratch {scratch.test_acc:.4f} test accuracy")

    selection.chosen = candidate
    result = BuildResult(
        target=target, config=cfg, data=data, teacher=teacher_info, selection=selection, student=r.student,
        scratch=scratch, qat=r.qat, export=r.export, verification=r.verification, benchmarks=r.benchmarks,
        run_dir=rd.path, loss=weights.to_str(), augment=augment, feedback_rounds=rounds,
        warnings=ctx.warnings, gates=[teacher_gate] if teacher_gate else [], arm=arm,
    )
    if gate_cfg.any:
        rep.stage("gates", "checking the measured result")
        result.gates += check_gates(preview_manifest(result), gate_cfg)  # raises GateFailed (exit 4)
        for g in result.gates:
            rep.note(g.reason)
    rep.stage("bundle", f"writing {out_root / target.name}")
    rep.finish()
    result.stage_seconds = dict(rep.stage_seconds)
    result.stage_seconds["total"] = time.perf_counter() - started
    result.bundle_dir = write_bundle(result, out_root / target.name, versions())
    rep.note(f"bundle ready: {result.bundle_dir}")
    return result


def preview_manifest(result: BuildResult) -> dict:
    """The manifest as it will be written, for gates to read before anything reaches the bundle."""
    from edgedistill.bundle.manifest import build_manifest
    from edgedistill.fsutil import sha256_file

    files = {n: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for n, p in result.artifact_paths().items()}
    return build_manifest(result, versions(), files)
