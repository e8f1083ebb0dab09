"""Load the user's teacher, and check it fits the data.

A teacher is given as one of:

- ``model.pt2``: a ``torch.export`` program (``torch.export.save``);
- ``model.pt`` / ``.ts`` / ``.torchscript``: a TorchScript module (``torch.jit.save``);
- ``FILE.py:FUNCTION`` or ``package.module:FUNCTION``: a factory returning an ``nn.Module``, with
  optional weights in ``.safetensors`` or a ``torch.save``-d state_dict.

A factory is code the user chose to run. A checkpoint is data and is treated as untrusted: nothing
in it is unpickled beyond tensors and plain containers. ``torch.export.load`` itself falls back to
full unpickling and loads AOTInductor shared libraries, so a ``.pt2`` is first checked for such
entries and then loaded with PyTorch's weights-only unpickler forced on.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import pickle
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, NoReturn

import torch
from torch import nn

from edgedistill.data.dataset import ImageDataset
from edgedistill.errors import InputError
from edgedistill.fsutil import sha256_file
from edgedistill.teacher.weights import (
    _SHOWN, _WRAPPER_KEYS, _first_line, _is_state_dict, _load_weights, _magic, _refused, _safe_torch_load,
)



@dataclass
class LoadedTeacher:
    module: nn.Module  # in eval mode (a torch.export program keeps the mode it was exported in)
    # kind, spec, path, weights, sha256 of every file read: recorded in the manifest.
    source: dict = field(default_factory=dict)
    is_zoo: bool = False


def load_teacher(spec: str, weights: Path | str | None = None) -> LoadedTeacher:
    weights = Path(weights).expanduser() if weights is not None else None
    factory = _parse_factory(spec)
    if factory is not None:
        module, source = _from_factory(*factory)
        source["weights"] = None
        if weights is not None:
            loaded = _load_weights(module, weights)
            source["sha256"].update(loaded.pop("sha256"))
            source.update(loaded)
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise InputError(
                f"teacher {spec} is not a file" + (" (it does not exist)" if not path.exists() else ""),
                hint="give a torch.export .pt2, a TorchScript file, or a factory FILE.py:FUNCTION",
            )
        if path.suffix == ".py":
            raise InputError(f"teacher {spec} names a Python file but no function",
                             hint=f"give the factory as {spec}:FUNCTION, e.g. {spec}:build")
        if weights is not None:
            raise InputError(f"--weights {weights} was given with teacher {path}, which already holds its weights",
                             hint="use --weights only with a factory teacher FILE.py:FUNCTION")
        module, source = _from_file(path)
    with contextlib.suppress(NotImplementedError):  # exported programs refuse .eval()
        module.eval()
    source["spec"] = spec
    return LoadedTeacher(module=module, source=source, is_zoo=False)


def infer_io(teacher: LoadedTeacher | nn.Module, dataset: ImageDataset) -> None:
    """Run two training images through the teacher; raise InputError if their shape or the class
    count does not match the data."""
    if isinstance(teacher, LoadedTeacher):
        module, name = teacher.module, teacher.source.get("spec", "")
    else:
        module, name = teacher, type(teacher).__name__
    c, h, w = dataset.input_shape_nchw
    batch = torch.from_numpy(dataset.preprocessing.apply(dataset.train.images[:2]))
    try:
        output = _run(module, batch)
    except Exception as err:  # user models fail in many ways; only some mean "this input does not fit"
        if len(batch) > 1 and _runs(module, batch[:1]):
            raise InputError(
                f"teacher {name} only accepts a batch of 1",
                hint="re-export it with a dynamic batch: torch.export.export(model, (x,), "
                     "dynamic_shapes=({0: torch.export.Dim('batch')},))",
            ) from err
        expected = _input_mismatch(module, (c, h, w))
        if expected is None:  # the input is what its first layer takes: the failure is the teacher's own
            raise teacher_failed(name, f"2 training images (N,C,H,W)=(2,{c},{h},{w})", err, module, (c, h, w),
                                 getattr(teacher, "source", None)) from err
        raise InputError(
            f"teacher {name} expects input {expected} but the data is (C,H,W)=({c},{h},{w}) "
            f"[{_first_line(err)}]",
            hint="use --image-size H --image-size W to resize the data, and check the channel count (--channels 1 or 3)",
        ) from err
    if not isinstance(output, torch.Tensor):
        raise InputError(f"teacher {name} returns {type(output).__name__}, not a tensor",
                         hint="the teacher must return logits as one tensor of shape (N, classes)")
    if output.ndim != 2 or output.shape[0] != len(batch):
        raise InputError(f"teacher {name} returns shape {tuple(output.shape)} for a batch of {len(batch)}",
                         hint="the teacher must return logits of shape (N, classes)")
    if output.shape[1] != dataset.num_classes:
        raise InputError(
            f"teacher {name} outputs {output.shape[1]} classes but the data {dataset.name} has "
            f"{dataset.num_classes} ({', '.join(dataset.class_names[:_SHOWN])}"
            f"{', ...' if dataset.num_classes > _SHOWN else ''})",
            hint="use data with the classes the teacher was trained on, or a teacher built for this data",
        )


# --- factories -----------------------------------------------------------------------------------

def _parse_factory(spec: str) -> tuple[str, str] | None:
    """``FILE.py:FUNCTION`` or ``package.module:FUNCTION`` -> (target, function); else None."""
    target, sep, function = spec.rpartition(":")
    if not sep or not function.isidentifier():
        return None  # also keeps Windows paths like C:\\models\\t.pt2 out
    if target.endswith(".py") or all(part.isidentifier() for part in target.split(".")):
        return target, function
    return None


def _from_factory(target: str, function: str) -> tuple[nn.Module, dict]:
    if target.endswith(".py"):
        path = Path(target).expanduser()
        if not path.is_file():
            raise InputError(f"teacher factory file {path} does not exist")
        with _on_sys_path(path.resolve().parent):
            namespace = _import_file(path)
            module = _call_factory(namespace, function, f"{path}:{function}")
        source = {"kind": "factory", "path": str(path.resolve()), "function": function,
                  "sha256": {str(path.resolve()): sha256_file(path)}}
    else:
        try:
            namespace = importlib.import_module(target)
        except ImportError as err:
            raise InputError(f"cannot import module {target} ({err})",
                             hint="install the package or add its folder to PYTHONPATH") from err
        module = _call_factory(namespace, function, f"{target}:{function}")
        file = getattr(namespace, "__file__", None)
        source = {"kind": "factory", "module": target, "function": function,
                  "path": file, "sha256": {file: sha256_file(file)} if file else {}}
    return module, source


@contextlib.contextmanager
def _on_sys_path(folder: Path) -> Iterator[None]:
    """Let the factory file import its sibling modules while it is imported and called."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))


def _import_file(path: Path):
    name = f"_edgedistill_teacher_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"cannot import {path} as Python")
    namespace = importlib.util.module_from_spec(spec)
    sys.modules[name] = namespace  # dataclasses and pickling look classes up here
    try:
        spec.loader.exec_module(namespace)
    except Exception as err:  # the user's module may raise anything while importing
        sys.modules.pop(name, None)
        raise InputError(f"importing teacher factory {path} failed: {type(err).__name__}: {err}") from err
    return namespace


def _call_factory(namespace, function: str, where: str) -> nn.Module:
    factory = getattr(namespace, function, None)
    if not callable(factory):
        available = sorted(n for n, v in vars(namespace).items() if callable(v) and not n.startswith("_")
                           and getattr(v, "__module__", None) == namespace.__name__)
        raise InputError(f"{where}: no function {function}",
                         hint=f"functions defined there: {', '.join(available) or 'none'}")
    try:
        module = factory()
    except Exception as err:  # the user's factory may raise anything
        raise InputError(f"calling {where}() failed: {type(err).__name__}: {err}",
                         hint="the factory must build the model when called with no arguments") from err
    if not isinstance(module, nn.Module):
        raise InputError(f"{where}() returned {type(module).__name__}, not a torch.nn.Module")
    return module


# --- model files ---------------------------------------------------------------------------------

def _from_file(path: Path) -> tuple[nn.Module, dict]:
    kind = _model_file_kind(path)
    if kind == "torch.export":
        module = _load_exported(path)
    elif kind == "torchscript":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated upstream
                module = torch.jit.load(str(path), map_location="cpu")
        except Exception as err:  # a damaged archive
            raise InputError(f"teacher {path} is not a loadable TorchScript file ({_first_line(err)})") from err
    else:
        _explain_checkpoint(path)
    return module, {"kind": kind, "path": str(path.resolve()), "weights": None,
                    "sha256": {str(path.resolve()): sha256_file(path)}}


def _model_file_kind(path: Path) -> str:
    """Tell the format by content: a torch.export archive, TorchScript, or (else) a checkpoint."""
    if _magic(path) != "zip":
        return "checkpoint"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        return "checkpoint"
    if any(n.endswith("/archive_format") for n in names):
        return "torch.export"
    if any("/code/" in n for n in names) or any(n.endswith("/constants.pkl") for n in names):
        return "torchscript"
    return "checkpoint"


def _load_exported(path: Path) -> nn.Module:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    native = [n for n in names if "/aotinductor/" in n or n.endswith((".so", ".dll", ".dylib", ".pyd"))]
    if native:
        raise InputError(f"teacher {path} contains compiled code ({native[0]}), which edgedistill does not load",
                         hint="save the program itself with torch.export.save, not an AOTInductor package")
    objects = [n for n in names
               if "/data/constants/" in n and Path(n).name.startswith(("custom_obj_", "opaque_obj_"))]
    if objects:
        raise InputError(f"teacher {path} holds pickled Python objects ({objects[0]}), which edgedistill refuses",
                         hint="export a model whose constants are tensors only")
    try:
        with _weights_only_loads():
            program = torch.export.load(path)
    except pickle.UnpicklingError as err:
        raise _refused("teacher", path, err) from None
    except Exception as err:  # a damaged or version-mismatched archive
        raise InputError(f"teacher {path} is not a loadable torch.export program ({_first_line(err)})",
                         hint="re-export it with torch.export.save from this PyTorch version") from err
    return program.module()


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    """Make every ``torch.load`` inside ``torch.export.load`` weights-only, even its unsafe fallback."""
    previous = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"]
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = previous


def _explain_checkpoint(path: Path) -> NoReturn:
    """A file that is neither export nor TorchScript: say what it is and how to give it instead."""
    loaded = _safe_torch_load(path, what="teacher")  # raises for pickled models and non-checkpoints
    wrapped = isinstance(loaded, dict) and any(_is_state_dict(loaded.get(k)) for k in _WRAPPER_KEYS)
    if _is_state_dict(loaded) or wrapped:
        raise InputError(
            f"teacher {path} holds only weights (a state_dict), not the model",
            hint=f"give the architecture as --teacher FILE.py:FUNCTION and this file as --weights {path}",
        )
    raise InputError(f"teacher {path} is not a torch.export program or TorchScript module",
                     hint="export the model with torch.export.save, or give a factory FILE.py:FUNCTION")


# --- probing -------------------------------------------------------------------------------------

def _run(module: nn.Module, batch: torch.Tensor):
    """Forward in eval mode without touching the module: a probe must not update BatchNorm statistics."""
    was_training = module.training
    with contextlib.suppress(NotImplementedError):
        module.eval()
    try:
        with torch.no_grad():
            return module(batch)
    finally:
        if was_training:
            with contextlib.suppress(NotImplementedError):
                module.train()


def _runs(module: nn.Module, batch: torch.Tensor) -> bool:
    try:
        _run(module, batch)
    except Exception:  # only asking whether it runs
        return False
    return True


def teacher_failed(name: str, what: str, err: BaseException, module: nn.Module,
                   chw: tuple[int, int, int], source: dict | None = None) -> InputError:
    """The teacher's own exception on ``what`` (the inputs it was given), in one line: its type,
    its message and where in the teacher's code it was raised."""
    where = _raised_at(err, source)
    first = _first_layer(module)
    takes = (f"its first layer takes {first[1]} {first[0]}, as the data gives; "
             if first and _input_mismatch(module, chw) is None else "")
    hint = f"{takes}the error comes from the teacher's own code: fix or wrap its forward"
    if _about_shapes(err):  # a size a later layer was built for, e.g. a Linear after the convolutions
        hint += (" (it is about tensor shapes: if the teacher was built for another image size, resize the data "
                 "with --image-size H --image-size W)")
    return InputError(f"teacher {name} failed on {what}: {type(err).__name__}: {_first_line(err)}"
                      + (f" (raised at {where})" if where else ""), hint=hint)


def _raised_at(err: BaseException, source: dict | None) -> str:
    """``file:line in function`` of the innermost frame in the teacher's own files (else the
    innermost frame outside torch), or "" when there is none to name."""
    import traceback

    frames = traceback.extract_tb(err.__traceback__)
    own = {str(Path(f).resolve()) for f in ((source or {}).get("sha256") or {})}
    mine = [f for f in frames if own and str(Path(f.filename).resolve()) in own]
    outside = [f for f in frames if f"{os.sep}torch{os.sep}" not in f.filename
               and f"{os.sep}edgedistill{os.sep}" not in f.filename]
    frame = (mine or outside or [None])[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}" if frame is not None else ""


def _about_shapes(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, RuntimeError) and any(w in text for w in ("shape", "size", "dimension"))


def _input_mismatch(module: nn.Module, chw: tuple[int, int, int]) -> str | None:
    """What the teacher takes, when that definitely differs from the data's (C, H, W): the input
    shape a torch.export program was traced with, its first convolution's channels, or (with no
    convolution at all) its first Linear's features against C*H*W. None when the input fits as far
    as can be told, so that a failure is not blamed on the data when it is the teacher's own."""
    if isinstance(module, torch.fx.GraphModule):
        for node in module.graph.nodes:
            value = node.meta.get("val") if node.op == "placeholder" else None
            if isinstance(value, torch.Tensor) and value.ndim == 4:
                traced = tuple(value.shape)[1:]
                if any(isinstance(d, int) and d != want for d, want in zip(traced, chw)):
                    return f"(N,C,H,W)={tuple(value.shape)}"
                return None
    first = _first_layer(module)
    if first is None:
        return None
    kind, n = first
    return f"{n} {kind}" if n != (chw[0] if kind == "channel(s)" else chw[0] * chw[1] * chw[2]) else None


def _first_layer(module: nn.Module) -> tuple[str, int] | None:
    """("channel(s)", in_channels) of the teacher's first convolution, or, with no convolution at
    all, ("input features", in_features) of its first Linear (which then takes the flattened image)."""
    layers = list(module.modules())
    conv = next((m for m in layers if isinstance(getattr(m, "in_channels", None), int)), None)
    if conv is not None:
        return "channel(s)", conv.in_channels
    linear = next((m for m in layers if isinstance(getattr(m, "in_features", None), int)), None)
    return ("input features", linear.in_features) if linear is not None else None
