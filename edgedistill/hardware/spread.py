"""The spread of generated models calibration measures: varied family, depth, width and input size.

Two parts: the small-image spread (resnet, mobilenet and vit on 1x28x28, large enough that
latencies sit well above timer noise) and the real-resolution one (resnet, mobilenet and mbconv on
RGB 96/160/224 px, each family in its layout for that size), so that the latency model is fitted
where the students it ranks live.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edgedistill.models.mobilenet import MobileNetSpec
from edgedistill.models.resnet import ResNetSpec
from edgedistill.models.vit import ViTSpec

CALIBRATION_INPUT = (1, 28, 28)  # large enough that latencies sit well above timer noise
# The real-resolution spread: RGB inputs of the sizes mobile apps feed, each family in its layout
# for that size (edgedistill.models.staged.layout_for), at the widths students are chosen at.
REAL_RESOLUTION_SIZES = (96, 160, 224)
REAL_RESOLUTION_WIDTHS = (0.5, 0.25)


def calibration_specs(quick: bool = False, in_channels: int = 1, num_classes: int = 10,
                      image_size: int = CALIBRATION_INPUT[1]) -> list:
    """Zoo specs of varied family, depth and width (a small spread for ``quick``)."""
    c, k, s = in_channels, num_classes, image_size
    if quick:
        return [ResNetSpec(c, k, (8, 16, 32), (1, 1, 1)), ResNetSpec(c, k, (16, 32, 64), (2, 2, 2)),
                MobileNetSpec(c, k, (8, 16, 32), (1, 1, 1), 4), ViTSpec(c, k, s, 7, 32, 1, 2)]
    specs: list = []
    for base, depths in [(8, (1, 1, 1)), (12, (2, 2, 2)), (16, (1, 1, 1)), (16, (2, 2, 2)), (24, (1, 2, 1)),
                         (24, (3, 3, 3)), (32, (1, 1, 1)), (32, (2, 2, 2)), (40, (1, 1, 2)), (48, (2, 2, 2)),
                         (8, (3, 3, 3)), (12, (1, 1, 1)), (20, (2, 1, 1)), (28, (1, 1, 1)), (36, (2, 2, 1)),
                         (16, (3, 2, 1))]:
        specs.append(ResNetSpec(c, k, (base, 2 * base, 4 * base), depths))
    for base, depths, expansion in [(8, (1, 1, 1), 4), (8, (2, 2, 2), 2), (12, (1, 2, 1), 4), (16, (1, 1, 1), 6),
                                    (16, (2, 2, 2), 4), (20, (1, 1, 2), 2), (24, (1, 1, 1), 4), (24, (2, 2, 2), 6),
                                    (32, (1, 1, 1), 2), (32, (2, 2, 2), 4), (12, (3, 3, 3), 4), (40, (1, 2, 1), 4),
                                    (16, (3, 2, 1), 1), (48, (1, 1, 1), 4)]:
        specs.append(MobileNetSpec(c, k, (base, 2 * base, 4 * base), depths, expansion))
    for dim, depth, heads, patch in [(32, 1, 2, 7), (32, 2, 2, 4), (48, 2, 4, 4), (64, 1, 4, 4), (64, 2, 4, 4),
                                     (64, 4, 4, 4), (96, 2, 4, 4), (96, 3, 4, 7), (128, 2, 4, 4), (48, 4, 2, 7),
                                     (80, 3, 4, 4), (32, 4, 2, 4), (112, 1, 4, 4), (64, 3, 2, 7)]:
        specs.append(ViTSpec(c, k, s, patch, dim, depth, heads))
    return specs


def real_resolution_specs(num_classes: int = 10) -> list[tuple[Any, tuple[int, int, int]]]:
    """(spec, input shape) pairs of the real-resolution spread: at each of
    :data:`REAL_RESOLUTION_SIZES`, the built-in teacher's residual layout, MobileNetV2's and
    EfficientNet-Lite0's, each at :data:`REAL_RESOLUTION_WIDTHS` of its width (stem, stages and
    head conv in proportion) and, at half width, also one block per stage: 27 models."""
    from edgedistill.models.mbconv import MBConvSpec
    from edgedistill.models.mobilenet import real_resolution_base
    from edgedistill.models.staged import layout_for, scaled_widths
    from edgedistill.teacher.builtin import default_teacher_spec

    out = []
    for size in REAL_RESOLUTION_SIZES:
        shape = (3, size, size)
        lite = MBConvSpec(3, num_classes)
        lite = dataclasses.replace(lite, **layout_for((size, size), len(lite.widths), lite.strides))
        for base in (default_teacher_spec(shape, num_classes), real_resolution_base(3, num_classes, (size, size)), lite):
            for m in REAL_RESOLUTION_WIDTHS:
                out.append((scaled_widths(base, m), shape))
            out.append((dataclasses.replace(scaled_widths(base, 0.5), depths=(1,) * len(base.depths)), shape))
    return out


# The held-out set (scripts/bench_latency_model.py): students the build itself would rank, none of
# them in the spread above, so that no calibration fitted on the spread has seen them. Per family
# and input size a few of the family's shrunk candidates, evenly spaced along the family's shrink
# order (deepest and widest first: cost falls along it within each depth).
HELD_OUT_PER_GROUP = {"small": 3, "real": 2}
# A vit teacher at 28 px: scripts/bench_distill.py's (patch 2, 196 tokens; the spread's vits use
# patch 4 and 7, so these students also test the model beyond the token counts it was fitted on).
HELD_OUT_VIT_TEACHER = {"image": 28, "patch": 2, "dim": 128, "depth": 4, "heads": 4}


def held_out_teachers(num_classes: int = 10) -> list[tuple[Any, tuple[int, int, int]]]:
    """(teacher spec, input shape) pairs whose students form the held-out set: at 1x28x28 the
    built-in teacher, the mobilenet base an outside teacher is shrunk from, and a vit; at each of
    :data:`REAL_RESOLUTION_SIZES` the built-in teacher, MobileNetV2 and EfficientNet-Lite0."""
    from edgedistill.models.mbconv import MBConvSpec
    from edgedistill.models.mobilenet import real_resolution_base
    from edgedistill.models.staged import layout_for
    from edgedistill.teacher.builtin import default_teacher_spec

    small = CALIBRATION_INPUT
    v = HELD_OUT_VIT_TEACHER
    out: list = [(default_teacher_spec(small, num_classes), small),
                 (real_resolution_base(small[0], num_classes, small[1:]), small),
                 (ViTSpec(small[0], num_classes, v["image"], v["patch"], v["dim"], v["depth"], v["heads"]), small)]
    for size in REAL_RESOLUTION_SIZES:
        shape = (3, size, size)
        lite = MBConvSpec(3, num_classes)
        lite = dataclasses.replace(lite, **layout_for((size, size), len(lite.widths), lite.strides))
        out += [(default_teacher_spec(shape, num_classes), shape),
                (real_resolution_base(3, num_classes, (size, size)), shape), (lite, shape)]
    return out


def held_out_specs(num_classes: int = 10) -> list[tuple[Any, tuple[int, int, int]]]:
    """(spec, input shape) pairs of the held-out set: for each of :func:`held_out_teachers`, its
    shrunk candidates (:func:`~edgedistill.select.candidates.shrink_specs`) that are not in the
    spread, in the family's order, and :data:`HELD_OUT_PER_GROUP` of them at the middles of equal
    runs of that order (never the first, the teacher's own shape). 27 models: 9 at 28 px, 6 at each of 96,
    160 and 224 px. Positions, not costs, pick them: pricing every candidate takes a minute."""
    from edgedistill.select.candidates import shrink_specs, spec_key

    spread = {(spec_key(s), tuple(shape)) for s, shape in
              [(s, CALIBRATION_INPUT) for s in calibration_specs()] + real_resolution_specs(num_classes)}
    out = []
    for teacher, shape in held_out_teachers(num_classes):
        fresh = [s for s in shrink_specs(teacher) if (spec_key(s), tuple(shape)) not in spread]
        k = HELD_OUT_PER_GROUP["small" if shape == CALIBRATION_INPUT else "real"]
        picks = sorted({min(len(fresh) - 1, max(1, round((i + 0.5) * len(fresh) / k))) for i in range(k)})
        out += [(fresh[i], shape) for i in picks]
    return out
