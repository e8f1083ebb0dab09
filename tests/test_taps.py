"""FeatureTaps records outputs by module path on any model; layer pairing follows stages."""

import pytest
import torch
from torch import nn

from edgedistill.models import vit  # noqa: F401  (registers "vit")
from edgedistill.models.base import create_model
from edgedistill.models.resnet import ResNetSpec
from edgedistill.models.taps import FeatureTaps, attention_pairs, discover_stages, stage_pairs
from edgedistill.models.vit import ViTSpec

X = torch.randn(2, 1, 8, 8)


def resnet(widths=(8, 16, 32), depths=(1, 1, 1)):
    return create_model(ResNetSpec(1, 10, widths, depths)).eval()


def vit_model(dim=32, depth=2, heads=2, patch_size=2):
    return create_model(ViTSpec(1, 10, 8, patch_size=patch_size, dim=dim, depth=depth, heads=heads)).eval()


def plain_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    ).eval()


def test_captures_resnet_stages_by_path():
    model = resnet()
    with FeatureTaps(model, ["stages.0", "stages.2", "pool"]) as taps:
        model(X)
    assert taps.outputs["stages.0"].shape == (2, 8, 8, 8)
    assert taps.outputs["stages.2"].shape == (2, 32, 2, 2)
    torch.testing.assert_close(taps.outputs["stages.2"], model.forward_features(X))


def test_captures_vit_blocks_by_path():
    model = vit_model()
    with FeatureTaps(model, ["blocks.1", "blocks.0.attn.attn_probs"]) as taps:
        model(X)
    assert taps.outputs["blocks.1"].shape == (2, 16, 32)
    assert taps.outputs["blocks.0.attn.attn_probs"].shape == (2, 2, 16, 16)


def test_captures_plain_sequential_and_removes_hooks_on_exit():
    model = plain_cnn()
    with FeatureTaps(model, ["0", "3"]) as taps:
        model(X)
        assert len(model[0]._forward_hooks) == 1
    assert taps.outputs["3"].shape == (2, 16, 4, 4)
    assert not model[0]._forward_hooks and not model[3]._forward_hooks
    taps.clear()
    model(X)
    assert taps.outputs == {}


def test_student_features_keep_their_graph():
    model = resnet()
    with FeatureTaps(model, ["stages.1"]) as taps:
        model(X)
    taps.outputs["stages.1"].sum().backward()
    assert model.stages[0][0].conv1[0].weight.grad is not None


def test_unknown_path_lists_close_valid_paths():
    with pytest.raises(KeyError, match=r"stages\.1"):
        FeatureTaps(resnet(), ["stage.1"])
    with pytest.raises(KeyError, match=r"blocks\.0\.attn"):
        FeatureTaps(vit_model(), ["blocks.0.atn"])


def test_stage_pairs_match_resnet_stages_one_to_one():
    pairs = stage_pairs(resnet((32, 64, 128)), resnet((8, 16, 32)))
    assert pairs == [("stages.0", "stages.0"), ("stages.1", "stages.1"), ("stages.2", "stages.2")]


def test_stage_pairs_prefer_equal_reduction():
    teacher = resnet((8, 16, 32, 64), (1, 1, 1, 1))  # reductions 1, 2, 4, 8
    pairs = stage_pairs(teacher, resnet((8, 16, 32)))  # reductions 1, 2, 4
    assert pairs == [("stages.0", "stages.0"), ("stages.1", "stages.1"), ("stages.2", "stages.2")]


def test_stage_pairs_by_relative_depth_for_transformers():
    assert stage_pairs(vit_model(depth=4), vit_model(depth=2)) == [("blocks.1", "blocks.0"), ("blocks.3", "blocks.1")]


def test_stage_pairs_without_feature_info_use_a_dry_run():
    stages = discover_stages(plain_cnn(), X)
    assert [(s.module, s.channels, s.reduction) for s in stages] == [("0", 8, 1), ("2", 16, 2)]
    assert stage_pairs(resnet((32, 64, 128)), plain_cnn(), X) == [("stages.0", "0"), ("stages.1", "2")]
    with pytest.raises(ValueError, match="sample"):
        stage_pairs(resnet(), plain_cnn())


def test_attention_pairs_by_relative_depth():
    assert attention_pairs(vit_model(depth=4), vit_model(depth=2)) == [
        ("blocks.1.attn.attn_probs", "blocks.0.attn.attn_probs"),
        ("blocks.3.attn.attn_probs", "blocks.1.attn.attn_probs"),
    ]
    assert attention_pairs(resnet(), vit_model()) == []
