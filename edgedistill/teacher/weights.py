"""Teacher weights and checkpoints, read as untrusted data: a ``.safetensors`` file, or a
``torch.save``-d state_dict loaded with PyTorch's weights-only unpickler; anything that would need
full unpickling is refused unrun, with how to re-save it."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from torch import nn

from edgedistill.errors import InputError
from edgedistill.fsutil import sha256_file

_RESAVE_HINT = (
    "re-save it from code you trust as weights only: torch.save(model.state_dict(), 'weights.pt') or "
    "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors'), then pass "
    "--teacher FILE.py:FUNCTION --weights that file; or export the whole model with "
    "torch.export.save(torch.export.export(model.eval(), (example_input,)), 'teacher.pt2')"
)
# Top-level keys that training frameworks wrap a state_dict in.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")
_SHOWN = 5


def _load_weights(module: nn.Module, path: Path) -> dict:
    state, wrapper_key = _read_state_dict(path)
    expected = module.state_dict()
    if all(k.startswith("module.") for k in state) and not any(k.startswith("module.") for k in expected):
        state = {k[len("module."):]: v for k, v in state.items()}  # saved from DataParallel/DDP
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_few(unexpected)})")
        raise InputError(f"weights {path} do not match the factory's model: {'; '.join(parts)} keys",
                         hint="check the factory builds the architecture the weights were saved from")
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}" for k, v in expected.items()
                  if not nn.parameter.is_lazy(v) and tuple(state[k].shape) != tuple(v.shape)]
    if mismatched:
        raise InputError(f"weights {path} differ in shape from the factory's model: {_few(mismatched)}",
                         hint="check the factory's arguments (channels, classes, widths) match the weights")
    module.load_state_dict(state, strict=True)
    return {"weights": str(path.resolve()), "weights_key": wrapper_key,
            "sha256": {str(path.resolve()): sha256_file(path)}}


def _read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    if not path.is_file():
        raise InputError(f"weights file {path} does not exist")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu"), None
        except Exception as err:  # safetensors raises its own error types for bad headers
            raise InputError(f"weights {path} is not a readable safetensors file ({_first_line(err)})") from err
    loaded = _safe_torch_load(path, what="weights")
    if _is_state_dict(loaded):
        return dict(loaded), None
    if isinstance(loaded, dict):
        for key in _WRAPPER_KEYS:
            if _is_state_dict(loaded.get(key)):
                return dict(loaded[key]), key
    described = ", ".join(f"{k!r}: {type(v).__name__}" for k, v in list(loaded.items())[:_SHOWN]) \
        if isinstance(loaded, dict) else type(loaded).__name__
    raise InputError(f"weights {path} hold no state_dict (found {described})",
                     hint="save the weights with torch.save(model.state_dict(), path)")


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _safe_torch_load(path: Path, what: str) -> object:
    """``torch.load`` restricted to tensors and plain containers; anything else is refused unrun."""
    fix = ("give a torch.export .pt2, a TorchScript file, or a factory FILE.py:FUNCTION" if what == "teacher"
           else "give a .safetensors file or one written by torch.save(model.state_dict(), path)")
    if _magic(path) is None:
        raise InputError(f"{what} {path} is not a PyTorch file (neither a zip archive nor a pickle)", hint=fix)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise _refused(what, path, err) from None
    except Exception as err:  # truncated archives and the like
        raise InputError(f"{what} {path} is not a readable PyTorch file ({_first_line(err)})", hint=fix) from err


def _refused(what: str, path: Path, err: pickle.UnpicklingError) -> InputError:
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    culprit = f" (it references {found.group(1)})" if found else ""
    return InputError(
        f"{what} {path} holds pickled Python objects{culprit}; edgedistill never unpickles them, "
        "because unpickling can run arbitrary code",
        hint=_RESAVE_HINT,
    )


def _magic(path: Path) -> str | None:
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle PROTO opcode
        return "pickle"
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _few(items: list[str]) -> str:
    return ", ".join(items[:_SHOWN]) + (", ..." if len(items) > _SHOWN else "")
