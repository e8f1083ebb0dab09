"""A teacher that fails is reported as what happened: its own exception (type, message, where it
was raised) in one line, exit 2, and "channel mismatch" only when the channels really differ; a
failure on the real batches is caught as well as one on the two-image probe; NaN or Inf logits are
refused with how many, on which split; and a loss that diverges names a checkpoint only if one exists."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cli_timeouts import CLI_TIMEOUT_S
from edgedistill.data.dataset import ImageDataset, Preprocessing, Split
from edgedistill.data.digits import load_digits_dataset
from edgedistill.distill.trainer import TrainConfig, TrainingDivergedError, train
from edgedistill.errors import InputError
from edgedistill.models.base import create_model
from edgedistill.models.resnet import ResNetSpec
from edgedistill.teacher.load import infer_io, load_teacher

# Teachers for the built-in digits (1x8x8, 10 classes), each failing in its own way.
TEACHERS = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Raises(nn.Module):  # its first layer takes the 64 pixels; the forward raises by itself
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(64, 10)

        def forward(self, x):
            raise ValueError("the teacher's own bug")


    class SmallBatchesOnly(nn.Module):  # passes a two-image probe, fails on the real batches
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(64, 10)

        def forward(self, x):
            if x.shape[0] > 2:
                raise RuntimeError("batches above 2 are not supported")
            return self.lin(x.flatten(1))


    class NonFinite(nn.Module):  # NaN for the images whose first pixel is the brightest, Inf elsewhere
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(64, 10)

        def forward(self, x):
            out = self.lin(x.flatten(1))
            return out + torch.where(x[:, :1, 0, 0] > 0, float("nan"), float("inf"))


    class RGB(nn.Module):  # built for 3 channels: a real channel mismatch on the digits' 1
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.head = nn.Linear(4, 10)

        def forward(self, x):
            return self.head(self.conv(x).mean((2, 3)))


    def raises():
        return Raises()


    def small_batches_only():
        return SmallBatchesOnly()


    def non_finite():
        return NonFinite()


    def rgb():
        return RGB()
    """
)


@pytest.fixture
def teachers(tmp_path: Path) -> Path:
    path = tmp_path / "my_teacher.py"
    path.write_text(TEACHERS)
    return path


def build(tmp_path: Path, factory: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDGEDISTILL_CACHE": str(tmp_path / "cache"),
           "EDGEDISTILL_LATENCY_STORE": str(tmp_path / "cache" / "store.jsonl")}
    return subprocess.run(
        [sys.executable, "-m", "edgedistill.cli", "build", "--target", "host", "--epochs", "1",
         "--teacher", f"my_teacher.py:{factory}", "--out", "out", "--run-dir", "run"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def assert_refused_cleanly(proc: subprocess.CompletedProcess, tmp_path: Path) -> str:
    """Exit 2, no traceback, nothing in the bundle folder; returns the error line."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    return error_line(proc)


# --- through the CLI, on the built-in digits ----------------------------------------------------

@pytest.mark.slow
def test_a_teacher_whose_forward_raises_is_reported_as_its_own_error_not_a_channel_mismatch(tmp_path, teachers):
    proc = build(tmp_path, "raises")
    line = assert_refused_cleanly(proc, tmp_path)
    assert "my_teacher.py:raises" in line
    assert "ValueError: the teacher's own bug" in line
    assert "my_teacher.py:" in line.split("raised at")[1]  # where in the teacher's file
    assert "expects input" not in proc.stderr and "--image-size" not in proc.stderr  # no advice to resize


@pytest.mark.slow
def test_a_real_channel_mismatch_is_still_called_one(tmp_path, teachers):
    proc = build(tmp_path, "rgb")
    line = assert_refused_cleanly(proc, tmp_path)
    assert "expects input 3 channel(s) but the data is (C,H,W)=(1,8,8)" in line


@pytest.mark.slow
def test_a_teacher_that_fails_only_on_real_batches_is_one_line_naming_the_teacher_and_the_batch(tmp_path, teachers):
    proc = build(tmp_path, "small_batches_only")
    line = assert_refused_cleanly(proc, tmp_path)
    assert "my_teacher.py:small_batches_only" in line
    assert "RuntimeError: batches above 2 are not supported" in line
    assert "test images 0-" in line  # which split and which images it failed on


@pytest.mark.slow
def test_nan_and_inf_teacher_logits_are_refused_with_counts_per_split_before_distillation(tmp_path, teachers):
    proc = build(tmp_path, "non_finite")
    line = assert_refused_cleanly(proc, tmp_path)
    data = load_digits_dataset()  # every logit of every image is NaN or Inf
    assert "my_teacher.py:non_finite outputs NaN or Inf logits" in line
    for split, word in (("test", "test"), ("val", "validation")):
        n = len(getattr(data, split))
        assert f"{n} of {n} {word} images ({10 * n} of {10 * n} logits)" in line
    assert "at chance" not in proc.stderr  # never read as a teacher that merely learned nothing
    stages = [line.split()[0] for line in proc.stderr.splitlines() if line.strip()]
    assert "distill" not in stages and "select" not in stages


# --- the same, without a process ----------------------------------------------------------------

def toy(channels: int = 1) -> ImageDataset:
    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (6, 8, 8, channels), dtype=np.uint8), np.arange(6) % 3)
    return ImageDataset(name="toy", train=split, val=split, test=split, class_names=("a", "b", "c"),
                        preprocessing=Preprocessing(1 / 255, (0.5,) * channels, (0.25,) * channels))


class _ConvThenBug(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        return {"not": "a tensor"}["tensor"]  # a KeyError in the teacher's own code


def test_the_probe_blames_the_teacher_when_its_first_convolution_takes_the_datas_channels():
    with pytest.raises(InputError) as err:
        infer_io(_ConvThenBug(), toy(channels=1))
    assert "KeyError: 'tensor'" in err.value.message
    assert "expects input" not in err.value.message
    assert "takes 1 channel(s)" in err.value.hint


def test_the_probe_names_the_line_in_the_teachers_file(tmp_path, teachers):
    loaded = load_teacher(f"{teachers}:raises")
    with pytest.raises(InputError) as err:
        infer_io(loaded, toy())
    source_line = next(i for i, line in enumerate(TEACHERS.splitlines(), 1) if "own bug" in line)
    assert f"raised at my_teacher.py:{source_line} in forward" in err.value.message


def test_non_finite_logits_are_counted_per_image_and_per_logit_on_each_split():
    from edgedistill.stages.teacher import refuse_non_finite

    clean = torch.zeros(4, 3)
    some = clean.clone()
    some[1, 0], some[1, 2], some[3, 1] = float("nan"), float("inf"), float("-inf")
    refuse_non_finite("t.py:build", {"test": clean, "val": clean})  # finite: nothing to say
    with pytest.raises(InputError) as err:
        refuse_non_finite("t.py:build", {"test": clean, "val": some})
    assert err.value.message == "teacher t.py:build outputs NaN or Inf logits for 2 of 4 validation images (3 of 12 logits)"


# --- a loss that diverges ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits160() -> ImageDataset:
    d = load_digits_dataset()
    return dataclasses.replace(d, train=Split(d.train.images[:160], d.train.labels[:160]),
                               val=Split(d.val.images[:40], d.val.labels[:40]))


def _student() -> nn.Module:
    torch.manual_seed(0)
    return create_model(ResNetSpec(1, 10, (4, 8), (1, 1)))


class _NaNTeacher(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(64, 10)

    def forward(self, x):
        return self.lin(x.flatten(1)) * float("nan")


def test_a_loss_that_diverges_in_epoch_1_names_no_checkpoint_and_blames_the_non_finite_teacher(digits160, tmp_path):
    from edgedistill.distill.losses import LossWeights

    with pytest.raises(TrainingDivergedError) as err:
        train(_student(), digits160, TrainConfig(epochs=2, batch_size=32), teacher=_NaNTeacher(),
              weights=LossWeights(ce=0.5, kd=0.5, temperature=4), checkpoint_dir=tmp_path, label="distill")
    text = str(err.value)
    assert not (tmp_path / "checkpoint.pt").exists()
    assert "checkpoint.pt" not in text and "no checkpoint was written" in text
    assert "the teacher's logits are NaN or Inf for 32 of this batch's 32 images" in text
    assert "lower the learning rate" not in text  # the learning rate is not what went wrong


def test_a_loss_that_diverges_later_names_the_checkpoint_that_exists(digits160, tmp_path):
    model = _student()

    def poison_after_epoch_1(label, done, total, info):
        with torch.no_grad():  # the checkpoint of epoch 1 is written by now
            model.head.weight.fill_(float("nan"))

    with pytest.raises(TrainingDivergedError) as err:
        train(model, digits160, TrainConfig(epochs=3, batch_size=32), checkpoint_dir=tmp_path,
              progress=poison_after_epoch_1)
    ckpt = tmp_path / "checkpoint.pt"
    assert ckpt.exists() and f"the last good checkpoint, after epoch 1, is {ckpt}" in str(err.value)


class _FailsOnLargeBatches(torch.nn.Module):
    """Answers like a linear classifier on small batches, raises on more than 100 images at once
    (so the teacher stage's checks could pass while distillation's teacher cache fails)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        if len(x) > 100:
            raise MemoryError("this teacher takes at most 100 images at once")
        return self.fc(x.flatten(1))


def test_a_teacher_that_fails_on_training_images_is_one_line_naming_the_stage_and_the_images():
    from edgedistill.data.digits import load_digits_dataset
    from edgedistill.distill.trainer import TrainConfig, train
    from edgedistill.errors import InputError
    from edgedistill.models.base import create_model
    from edgedistill.models.resnet import ResNetSpec

    data = load_digits_dataset()
    student = create_model(ResNetSpec(1, 10, (4, 8), (1, 1)))
    with pytest.raises(InputError) as err:
        train(student, data, TrainConfig(epochs=1), teacher=_FailsOnLargeBatches().eval(), label="distill")
    text = str(err.value)
    assert text.startswith("distill: the teacher failed on the ") and "training images" in text
    assert "MemoryError: this teacher takes at most 100 images at once" in text
    assert "teacher's own code" in err.value.hint
