"""What every stage of one build reads: the config, the target, the data, the teacher, the loss
and training settings, the run directory and the progress reporter."""

from __future__ import annotations

import dataclasses
import platform
from dataclasses import dataclass, field

from edgedistill import __version__
from edgedistill.config import BuildConfig
from edgedistill.data.dataset import ImageDataset
from edgedistill.distill.losses import LossWeights
from edgedistill.distill.trainer import TrainConfig
from edgedistill.progress import Reporter
from edgedistill.rundir import RunDir

VERSIONED = ("torch", "litert-torch", "ai-edge-litert", "torchao", "onnx", "onnxruntime", "onnxscript", "onnxsim",
             "numpy")


def versions() -> dict[str, str]:
    """The versions of everything that shapes the artifacts (the manifest and the stage keys)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"edgedistill": __version__, "python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


@dataclass
class BuildContext:
    cfg: BuildConfig
    target: object  # hardware Target, budgets already overridden by the flags
    data: ImageDataset
    teacher: object  # the teacher nn.Module, in eval mode
    teacher_info: object  # stages.teacher.TeacherInfo
    weights: LossWeights  # the distillation loss
    train_cfg: TrainConfig
    device: str  # where to benchmark: "local", "ssh://...", "adb[:SERIAL]" or a devices.toml name
    rd: RunDir
    rep: Reporter
    warnings: list[str] = field(default_factory=list)
    # the zoo model the student's weights are sliced from: the teacher itself, or the twin a
    # recognised teacher was mapped onto (edgedistill.teacher.recognise)
    seed_teacher: object = None
    # The data as the teacher sees it, when ``data`` is a student's view at a lower resolution
    # (:meth:`at_resolution`); None: ``data`` itself.
    teacher_data: ImageDataset | None = None
    _memo: dict = field(default_factory=dict, repr=False)  # shared by every view of this build

    @property
    def full_data(self) -> ImageDataset:
        return self.teacher_data if self.teacher_data is not None else self.data

    @property
    def student_size(self) -> tuple[int, int] | None:
        """The student's (H, W) when it is not the data's, else None."""
        return tuple(self.data.image_shape[:2]) if self.teacher_data is not None else None

    def at_resolution(self, size) -> "BuildContext":
        """This build as a student at ``size`` (H, W) sees it: ``data`` resized (None: as it is)."""
        full = self.full_data
        if size is None or tuple(size) == full.image_shape[:2]:
            return dataclasses.replace(self, data=full, teacher_data=None)
        return dataclasses.replace(self, data=full.resized(tuple(size)), teacher_data=full)

    def teacher_train_logits(self):
        """The teacher's logits on the un-augmented, full-size training split, once per build
        (every round's QAT reads them): distillation's cache of them when it had one
        (:meth:`keep_teacher_train_logits`), else computed here a batch at a time."""
        if "teacher_logits" not in self._memo:
            from edgedistill.distill.evaluation import predict_split

            self._memo["teacher_logits"] = predict_split(self.teacher, self.full_data, "train")
        return self._memo["teacher_logits"]

    def keep_teacher_train_logits(self, logits) -> None:
        """Distillation's cached teacher logits on the training split (the same images, batches
        and teacher as :meth:`teacher_train_logits` would run)."""
        self._memo.setdefault("teacher_logits", logits)

    def warn(self, message: str) -> None:
        """Said loudly now, and kept in the manifest and at the top of both reports."""
        self.warnings.append(message)
        self.rep.warn(message)
