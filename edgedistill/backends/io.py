"""How any exported model is fed and read, whatever its backend.

``TensorSpec`` is the manifest's description of a model input or output; :func:`to_model_input`
is the one definition of "raw pixels -> the tensor the model takes" that verification uses, so
what is verified is what the manifest promises. Every backend's runtime answers
:class:`RuntimeModel`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from edgedistill.data.dataset import Preprocessing


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # batch dimension written as 1
    layout: str  # "NHWC" | "NCHW" for images, "NC" for logits
    dtype: str  # "int8" | "float32"
    scale: float | None = None
    zero_point: int | None = None
    # "dynamic": any batch size; an int: the only batch the model runs (feed that many at a time)
    batch: str | int = "dynamic"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["quantization"] = (
            {"scale": self.scale, "zero_point": self.zero_point} if self.scale is not None else None
        )
        del d["scale"], d["zero_point"]
        return d


def to_model_input(raw_nhwc: np.ndarray, pre: Preprocessing, spec: TensorSpec) -> np.ndarray:
    x = pre.apply(raw_nhwc)  # float NCHW
    if spec.layout == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    if spec.dtype == "int8":
        x = np.clip(np.round(x / spec.scale + spec.zero_point), -128, 127).astype(np.int8)
    return np.ascontiguousarray(x.astype(np.float32) if spec.dtype == "float32" else x)


def from_model_output(y: np.ndarray, spec: TensorSpec) -> np.ndarray:
    if spec.dtype == "int8":
        return (y.astype(np.float32) - spec.zero_point) * spec.scale
    return y.astype(np.float32)


class RuntimeModel(Protocol):
    """A loaded artifact: what it takes, what it gives, and a batched run on numpy arrays."""

    input_spec: TensorSpec
    output_spec: TensorSpec

    def run(self, x: np.ndarray, batch: int = 256) -> np.ndarray: ...
