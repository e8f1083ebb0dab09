"""A tiny, isolated workaround for litert-torch 0.10.0 with torch 2.13 / torchao 0.18.

``litert_torch.quantize.pt2e_quantizer_utils._do_annotate_conv_bn`` hands a plain function to
torchao's ``_get_aten_graph_module_for_pattern``, which now exports it with ``torch.export`` and so
needs an ``nn.Module``: ``prepare_qat_pt2e`` fails with "Expected mod to be an instance of
torch.nn.Module, got <class 'function'>". Wrapping the pattern in torchao's ``WrapperModule`` is
all it takes. ``tests/test_quantize.py::test_litert_pattern_workaround_still_needed`` fails the day
upstream fixes this, so the patch can be deleted then.
"""

from __future__ import annotations

import torch

_INSTALLED = False


def install() -> None:
    global _INSTALLED
    if _INSTALLED:
        return
    from litert_torch.quantize import pt2e_quantizer_utils as utils
    from torchao.quantization.pt2e.export_utils import WrapperModule

    original = utils._get_aten_graph_module_for_pattern

    def wrapped(pattern, *args, **kwargs):
        if not isinstance(pattern, torch.nn.Module):
            pattern = WrapperModule(pattern)
        return original(pattern, *args, **kwargs)

    utils._get_aten_graph_module_for_pattern = wrapped
    _INSTALLED = True
