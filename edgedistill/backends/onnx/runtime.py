"""ONNX Runtime (CPU execution provider) for .onnx artifacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgedistill.backends.io import TensorSpec


class OnnxModel:
    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._in = self.session.get_inputs()[0]
        self._out = self.session.get_outputs()[0]

    @property
    def input_spec(self) -> TensorSpec:
        shape = tuple(1 if not isinstance(s, int) else s for s in self._in.shape)
        return TensorSpec(self._in.name, shape, "NCHW", "float32")

    @property
    def output_spec(self) -> TensorSpec:
        shape = tuple(1 if not isinstance(s, int) else s for s in self._out.shape)
        return TensorSpec(self._out.name, shape, "NC", "float32")

    def run(self, x: np.ndarray, batch: int = 256) -> np.ndarray:
        return np.concatenate(
            [self.session.run([self._out.name], {self._in.name: x[i : i + batch]})[0] for i in range(0, len(x), batch)]
        )

    def quantized_node_count(self) -> int:
        import onnx

        return sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in onnx.load(str(self.path)).graph.node)
