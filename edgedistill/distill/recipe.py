"""The default distillation recipe: which loss and schedule a build uses when the user names none.

Measured on the built-in digits with the build's own teacher (resnet w32-64-128 d2-2-2, 696k params,
30 epochs, 99.16% test) and a student 35x smaller (resnet w8-16-32 d1-1-1, 19.8k params), 40
epochs, 5 seeds, test accuracy mean +- std (one test image is 0.28 points):

    scratch, no augmentation              98.16 +- 0.47
    scratch, shift augmentation           97.77 +- 0.65
    kd T=4, no augmentation               97.88 +- 0.70
    kd T=4, no augmentation, init         97.77 +- 0.20
    kd T=2 + dist, augmentation, init     97.88 +- 0.51
    kd T=4, augmentation, init            98.22 +- 0.54   <- the recipe

With a weaker teacher (96.9%, 20 epochs) the same comparison had naive KD ahead of scratch and the
augmented recipes behind it; the teacher's quality moves these margins more than the loss does
(Cho & Hariharan 2019). What the recipe takes from it:

- consistent views (Beyer et al. 2022): shift augmentation on, the teacher scoring exactly the
  student's shifted view (cached for all nine shifts once per run rather than run per batch);
- the student starts from the teacher's weights where shapes allow (the build's
  ``init_from_teacher``, DistilBERT-style), so distillation refines rather than starts cold;
- KD at T=4 mixed half and half with the labels.

The margin over scratch is within seed noise. ``scripts/bench_distill.py --seeds 3`` gave KD
+1.02 points over scratch on one commit and -0.74 on the next, whose only change to training was
the memory layout of the input batches (different kernels, different rounding, a different
trajectory). On this small data set no loss here beats labels alone reliably; the recipe is the
best-founded choice, not a proven winner.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edgedistill.distill.losses import LossWeights
from edgedistill.distill.trainer import TrainConfig

DEFAULT_LOSS = LossWeights(ce=0.5, kd=0.5, temperature=4.0)

# Fields of TrainConfig the recipe sets; the rest stay the caller's.
DEFAULT_OVERRIDES: dict[str, Any] = {"augment": True, "epochs": 40}
# The student starts from the teacher's weights (edgedistill/select/init_from_teacher.py).
DEFAULT_INIT_FROM_TEACHER = True


def default_recipe(teacher_params: int, student_params: int) -> tuple[LossWeights, dict[str, Any]]:
    """Loss weights and TrainConfig overrides for distilling a teacher of ``teacher_params`` into a
    student of ``student_params``. The build applies the overrides with :func:`apply_overrides`."""
    if teacher_params <= 0 or student_params <= 0:
        raise ValueError(f"parameter counts must be positive, got {teacher_params} and {student_params}")
    return dataclasses.replace(DEFAULT_LOSS), dict(DEFAULT_OVERRIDES)


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    unknown = set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ValueError(f"unknown TrainConfig fields in the recipe: {sorted(unknown)}")
    return dataclasses.replace(cfg, **overrides)
