"""Stage 4, distill (and the scratch baseline): train one student, initialised from the teacher
where shapes allow, through teacher assistants past the size ratio; kept in the run directory."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from edgedistill.data.dataset import ImageDataset
from edgedistill.distill.losses import LossWeights
from edgedistill.distill.evaluation import evaluate_split
from edgedistill.distill.trainer import TrainConfig, TrainResult, train
from edgedistill.models import count_parameters, create_model, spec_from_dict, spec_to_dict
from edgedistill.progress import Reporter
from edgedistill.rundir import RunDir

WEIGHTS_FILE = "student.safetensors"


@dataclass
class StudentResult:
    """A trained student (distilled or from scratch) kept in the run directory."""

    spec: dict
    params: int
    val_acc: float
    test_acc: float
    train: TrainResult  # the training curve, as the report draws it
    weights_file: str
    assistants: list[str] = field(default_factory=list)  # teacher-assistant chain, largest first
    init: dict = field(default_factory=dict)  # how the student was initialised from the teacher

    @classmethod
    def from_stored(cls, d: dict) -> "StudentResult":
        return cls(**{**d, "train": TrainResult.from_dict(d["train"])})


def load_student(result: StudentResult, stage_dir: Path) -> torch.nn.Module:
    model = create_model(spec_from_dict(result.spec))
    model.load_state_dict(load_file(str(stage_dir / result.weights_file)))
    return model.eval()


def weights_digest(rd: RunDir, tag: str) -> str:
    """What the later stages of a student depend on: its distilled weights, by content."""
    from edgedistill.fsutil import sha256_file

    return sha256_file(rd.path / tag / "distill" / WEIGHTS_FILE)


def train_student(
    rd: RunDir, stage_name: str, inputs: dict, spec, data: ImageDataset, cfg: TrainConfig,
    teacher, weights: LossWeights, rep: Reporter, *, label: str, assistant_ratio: float = float("inf"),
    init_from_teacher: bool = False, seed_teacher=None, student_size: tuple[int, int] | None = None,
    teacher_logits_to=None,
) -> tuple[StudentResult, torch.nn.Module]:
    """Distil (or, without a teacher, train) a student of ``spec``. ``seed_teacher``: the zoo model
    its initial weights are sliced from when ``init_from_teacher`` (default: the teacher).
    ``data`` is the full-size data; ``student_size`` (H, W) the student's own resolution, if lower.
    ``teacher_logits_to``: handed ``teacher``'s training-split logits when distillation cached them
    (not through an assistant chain, whose last teacher is an assistant)."""
    s_data = data.resized(student_size) if student_size else data
    stage = rd.stage(stage_name, inputs)
    stored = stage.load(files=(WEIGHTS_FILE,))
    if stored is not None:
        try:
            result = StudentResult.from_stored(stored)
            model = load_student(result, stage.dir)
        except (TypeError, KeyError, ValueError, RuntimeError, OSError):
            stored = None  # a damaged stage result: train again
        else:
            rep.note(f"{label}: reused from {stage.dir} (test accuracy {result.test_acc:.4f})")
            return result, model
    if stage.begin():
        rep.note(f"{label}: resuming an interrupted run from {stage.dir}")
    torch.manual_seed(cfg.seed)
    model = create_model(spec)
    same_family = teacher is not None and getattr(getattr(teacher, "spec", None), "family", None) == spec.family
    seed = seed_teacher if seed_teacher is not None else teacher
    init_report: dict = {}
    if init_from_teacher and teacher is not None and getattr(getattr(seed, "spec", None), "family", None) == spec.family:
        from edgedistill.models.init import init_student_from_teacher

        # DistilBERT-style head start: evenly spaced blocks, most important channels/heads.
        sample = s_data.batch("train", slice(0, min(512, 4 * s_data.block_rows())))
        init_report = init_student_from_teacher(seed, model, sample=torch.from_numpy(sample))
        if seed is not teacher:
            init_report["source"] = "the zoo twin of the recognised teacher (its weights, renamed)"
        if init_report.get("initialised"):
            rep.note(f"{label}: initialised from the teacher's weights ({init_report.get('criterion', 'see run directory')})")
        else:
            rep.note(f"{label}: not initialised from the teacher: {init_report.get('reason')}")
    assistants: list[str] = []
    ratio = count_parameters(teacher) / count_parameters(model) if teacher is not None else 0.0
    if teacher is not None and ratio > assistant_ratio and same_family:
        from edgedistill.distill.assistant import distill_chain

        chain = distill_chain(teacher, model, data, cfg, weights, ratio_threshold=assistant_ratio, label=label,
                              checkpoint_dir=stage.dir, progress=rep.epoch, student_size=student_size)
        assistants = [a.describe() if hasattr(a, "describe") else str(a) for a in chain.assistants]
        rep.note(f"teacher/student ratio {ratio:.0f}x > {assistant_ratio:g}x: distilled through "
                 f"assistant(s) {', '.join(assistants)}")
        history = chain.student_result
    else:
        if teacher is not None and ratio > assistant_ratio:
            rep.note(f"teacher/student ratio {ratio:.0f}x > {assistant_ratio:g}x, but the teacher is not of the "
                     "student's family: no assistant can be shaped between them; distilling directly")
        history = train(model, data, cfg, teacher=teacher, weights=weights, label=label,
                        checkpoint_dir=stage.dir, progress=rep.epoch, student_size=student_size,
                        teacher_logits_to=teacher_logits_to)
    save_file(model.state_dict(), str(stage.dir / WEIGHTS_FILE))
    result = StudentResult(
        spec=spec_to_dict(spec), params=count_parameters(model), val_acc=history.best_val_acc,
        test_acc=evaluate_split(model, s_data, "test"), train=history, weights_file=WEIGHTS_FILE,
        assistants=assistants, init=init_report,
    )
    stage.save(dataclasses.asdict(result))
    (stage.dir / "checkpoint.pt").unlink(missing_ok=True)
    return result, model


def check_student(test_logits: np.ndarray, student: StudentResult, data: ImageDataset, warn) -> None:
    """Say loudly when the distilled student answers (almost) one class: top-1 agreement between
    its artifacts is then 100% and means nothing. ``test_logits``: the float student's on the test
    split, as the export stage saved them for verification."""
    from edgedistill.quality import collapse_check

    check = collapse_check(np.asarray(test_logits).argmax(1), data.num_classes)
    if check.collapsed:
        warn(f"the distilled student has collapsed: on the test split it {check.describe()}, at "
             f"{100 * student.test_acc:.1f}% accuracy; its artifacts' agreement says nothing about quality")
