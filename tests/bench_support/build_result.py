"""A BuildResult made of the real typed records, without training anything: for tests of what the
bundle writes from a result (manifest, reports)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgedistill.backends import artifact_specs
from edgedistill.config import BuildConfig
from edgedistill.distill.trainer import TrainResult
from edgedistill.hardware.targets import load_target
from edgedistill.models.resnet import ResNetSpec
from edgedistill.pipeline import BuildResult
from edgedistill.quantize.qat import QATConfig
from edgedistill.select.candidates import Candidate, Selection
from edgedistill.stages.export import ExportResult
from edgedistill.stages.quantize import QuantizeResult
from edgedistill.stages.student import StudentResult
from edgedistill.stages.teacher import TeacherInfo
from edgedistill.verify.checks import ArtifactReport


def fake_build_result(data, run_dir: Path | str = "/nonexistent-run") -> BuildResult:
    c, h, w = data.input_shape_nchw
    spec = ResNetSpec(c, data.num_classes, (8, 16, 32), (1, 1, 1))
    io = {"name": "x", "dtype": "int8", "shape": [1, h, w, c], "layout": "NHWC", "batch": "dynamic",
          "quantization": {"scale": 0.1, "zero_point": 0}}
    reports = [ArtifactReport(file=a.name, format=a.backend, precision=a.precision, reference=a.reference_name,
                              accuracy=0.9, reference_accuracy=0.9, agreement=1.0, max_abs_logit_diff=0.0,
                              input=io, output=io, predictions=np.zeros(len(data.test), dtype=np.int64))
               for a in artifact_specs()]
    student = StudentResult(spec={"family": "resnet"}, params=10, val_acc=0.9, test_acc=0.9, train=TrainResult(),
                            weights_file="student.safetensors")
    chosen = Candidate(spec=spec, params=10, flops=100, predicted_size_kb=1.0)
    return BuildResult(
        target=load_target("android-arm64"), config=BuildConfig(), data=data,
        teacher=TeacherInfo(key="k", params=100, test_acc=0.95, val_acc=0.95, source={}),
        selection=Selection("android-arm64", "teacher", [chosen], chosen, rule="largest that fits"),
        student=student, scratch=None,
        qat=QuantizeResult(losses=[], val_acc=0.9, test_acc=0.9, seconds=0.0, config=QATConfig(),
                           bias_correction={"layers": 3, "images": 10, "max_shift": 0.01},
                           val_acc_before=0.9, val_acc_fine_tuned=0.9, fine_tuned_kept=True,
                           dir=f"{run_dir}/quantize"),
        export=ExportResult(dir=f"{run_dir}/export"),
        verification=reports, benchmarks={}, loss="kd",
    )
