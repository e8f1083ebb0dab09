"""The ViT family answers the zoo protocol, exposes attention probabilities, and exports."""

import numpy as np
import pytest
import torch

from edgedistill.models import vit  # noqa: F401  (registers "vit")
from edgedistill.models.base import create_model, spec_from_dict, spec_to_dict
from edgedistill.models.taps import FeatureTaps
from edgedistill.models.vit import ViT, ViTSpec


def digits_vit(**kw) -> ViT:
    torch.manual_seed(0)
    return create_model(ViTSpec(in_channels=1, num_classes=10, image_size=8, **kw))


def test_forward_is_head_of_features_on_8x8_digits():
    model = digits_vit().eval()
    x = torch.randn(3, 1, 8, 8)
    feats = model.forward_features(x)
    assert feats.shape == (3, 16, 64)  # patch 2 on 8x8 -> 16 tokens
    assert torch.equal(model(x), model.forward_head(feats))
    assert model.forward_head(feats, pre_logits=True).shape == (3, 64)


def test_28x28_with_patch_4():
    model = create_model(ViTSpec(1, 10, image_size=28, patch_size=4, dim=32, depth=2, heads=2)).eval()
    x = torch.randn(2, 1, 28, 28)
    assert model.forward_features(x).shape == (2, 49, 32)
    assert model(x).shape == (2, 10)


def test_feature_info_and_attention_modules_name_real_modules():
    model = digits_vit(depth=3)
    assert [f.module for f in model.feature_info] == ["blocks.0", "blocks.1", "blocks.2"]
    assert all(f.kind == "tokens" and f.channels == 64 and f.reduction == 2 for f in model.feature_info)
    assert model.attention_modules == [f"blocks.{i}.attn.attn_probs" for i in range(3)]
    for path in [f.module for f in model.feature_info] + model.attention_modules + [model.embedding_module]:
        model.get_submodule(path)


def test_attention_probabilities_are_hookable_rows_summing_to_one():
    model = digits_vit(heads=4).eval()
    x = torch.randn(2, 1, 8, 8)
    with FeatureTaps(model, model.attention_modules + [model.embedding_module]) as taps:
        logits = model(x)
    probs = taps.outputs["blocks.0.attn.attn_probs"]
    assert probs.shape == (2, 4, 16, 16)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4, 16))
    torch.testing.assert_close(taps.outputs["pool"], model.forward_head(model.forward_features(x), pre_logits=True))
    assert logits.shape == (2, 10)


def test_exports_with_torch_export_and_matches_eager():
    model = digits_vit(depth=2).eval()
    x = torch.randn(2, 1, 8, 8)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), model(x))


def test_spec_round_trips_and_rejects_bad_shapes():
    spec = ViTSpec(1, 10, image_size=8, dim=48, heads=3)
    assert spec_from_dict(spec_to_dict(spec)) == spec
    assert isinstance(create_model(spec), ViT)
    with pytest.raises(ValueError, match="patch_size"):
        ViTSpec(1, 10, image_size=8, patch_size=3)
    with pytest.raises(ValueError, match="heads"):
        ViTSpec(1, 10, image_size=8, dim=30, heads=4)


def test_scales_in_depth_and_width():
    small = sum(p.numel() for p in digits_vit(dim=32, depth=2, heads=2).parameters())
    big = sum(p.numel() for p in digits_vit(dim=64, depth=4, heads=4).parameters())
    assert big > 4 * small


def test_vit_tflite_has_a_fixed_batch_of_one_and_runs_any_number_of_images(tmp_path):
    """litert-torch 0.10 bakes the sample's batch into a ViT's reshapes, so the ViT is exported at
    batch 1, says so, and the runtime feeds it one image at a time."""
    from edgedistill.backends.tflite.convert import export_tflite_fp32
    from edgedistill.models import family_of
    from edgedistill.backends.tflite.runtime import TFLiteModel

    spec = ViTSpec(1, 10, 8, 2, 16, 1, 2)
    assert not family_of(spec).dynamic_batch
    torch.manual_seed(0)
    model = create_model(spec).eval()
    x = torch.randn(7, 1, 8, 8)
    path = export_tflite_fp32(model, x[:4], tmp_path / "vit.tflite", dynamic_batch=False)
    tfl = TFLiteModel(path)
    assert tfl.fixed_batch == 1 and tfl.input_spec.batch == 1
    got = tfl.run(x.permute(0, 2, 3, 1).numpy())
    with torch.no_grad():
        assert np.abs(got - model(x).numpy()).max() < 1e-4


def test_a_vit_teacher_is_refused_for_an_int8_target_before_any_training():
    from edgedistill.data.digits import load_digits_dataset
    from edgedistill.errors import InputError
    from edgedistill.hardware.targets import load_target
    from edgedistill.config import BuildConfig
    from edgedistill.progress import Reporter
    from edgedistill.stages.select import select_stage

    teacher = create_model(ViTSpec(1, 10, 8, 2, 32, 2, 2))
    with pytest.raises(InputError, match="LayerNorm, softmax and GELU"):
        select_stage(BuildConfig(), load_target("android-arm64"), teacher, 10**6, load_digits_dataset(),
                     Reporter(quiet=True))
