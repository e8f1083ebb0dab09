"""Run exported artifacts on numpy batches, fed exactly as the manifest tells an app to feed them.

``TensorSpec`` is the manifest's description of a model input or output; :func:`to_model_input`
is the one definition of "raw pixels -> the tensor the model takes" that verification uses, so
what is verified is what the manifest promises.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

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


class TFLiteModel:
    def __init__(self, path: Path, *, builtin_only: bool = False, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = (
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if builtin_only else OpResolverType.AUTO
        )
        from edgedistill.jsonout import quiet_native_stderr

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


def load_artifact(path: Path, **kw):
    return TFLiteModel(path, **kw) if Path(path).suffix == ".tflite" else OnnxModel(path, threads=kw.get("threads", 1))
