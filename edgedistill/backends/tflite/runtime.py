"""LiteRT runtime for .tflite artifacts: XNNPACK (the default delegate) or the builtin kernels alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgedistill.backends.io import TensorSpec


class TFLiteModel:
    def __init__(self, path: Path, *, builtin_only: bool = False, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = (
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if builtin_only else OpResolverType.AUTO
        )
        from edgedistill.streams import quiet_native_stderr

        self.path = Path(path)
        with quiet_native_stderr():  # LiteRT's native "Created ... XNNPACK delegate" INFO line
            self.interpreter = Interpreter(
                str(path), num_threads=threads, experimental_op_resolver_type=resolver
            )
            self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]
        self._batch = None

    def _spec(self, d: dict, layout: str) -> TensorSpec:
        scale, zp = d["quantization"]
        quantized = d["dtype"] == np.int8
        return TensorSpec(
            name=d["name"], shape=(1, *map(int, d["shape"][1:])), layout=layout,
            dtype=np.dtype(d["dtype"]).name, scale=float(scale) if quantized else None,
            zero_point=int(zp) if quantized else None, batch=self.fixed_batch or "dynamic",
        )

    @property
    def fixed_batch(self) -> int | None:
        """The batch size baked into the model, or None when its batch dimension is dynamic."""
        sig = self._in.get("shape_signature")
        return None if sig is None or len(sig) == 0 or int(sig[0]) == -1 else int(self._in["shape"][0])

    @property
    def input_spec(self) -> TensorSpec:
        return self._spec(self._in, "NHWC")

    @property
    def output_spec(self) -> TensorSpec:
        return self._spec(self._out, "NC")

    def tensor_dtypes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d in self.interpreter.get_tensor_details():
            name = np.dtype(d["dtype"]).name
            counts[name] = counts.get(name, 0) + 1
        return counts

    def integer_problems(self) -> list[str]:
        """Why this model is not fully integer (int8 input/output, only int8 and int32 tensors);
        empty when it is."""
        problems = []
        io = (self.input_spec.dtype, self.output_spec.dtype)
        if io != ("int8", "int8"):
            problems.append(f"input/output are {io[0]}/{io[1]}, not int8/int8")
        floats = {k: v for k, v in self.tensor_dtypes().items() if k not in ("int8", "int32")}
        if floats:
            problems.append(f"not fully integer: tensors of type {floats} (expected only int8 and int32)")
        return problems

    def op_names(self) -> list[str]:
        return [op["op_name"] for op in self.interpreter._get_ops_details()]

    def run(self, x: np.ndarray, batch: int = 256) -> np.ndarray:
        outs = []
        batch = self.fixed_batch or batch  # a fixed-batch model cannot be resized
        for i in range(0, len(x), batch):
            xb = x[i : i + batch]
            if self._batch != len(xb):
                self.interpreter.resize_tensor_input(self._in["index"], list(xb.shape))
                self.interpreter.allocate_tensors()
                self._batch = len(xb)
            self.interpreter.set_tensor(self._in["index"], xb)
            self.interpreter.invoke()
            outs.append(self.interpreter.get_tensor(self._out["index"]).copy())
        return np.concatenate(outs)
