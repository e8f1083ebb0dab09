"""Distillation losses: each behaves as its paper states, and they compose with gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from edgedistill.distill.loss_functions import (
    HintAdapter,
    attention_map,
    attention_transfer_loss,
    dist_loss,
    hint_loss,
    kd_loss,
    rkd_loss,
    transformer_attention_loss,
)
from edgedistill.distill.losses import DistillationLoss, LossWeights, parse_loss_weights
from edgedistill.errors import InputError
from edgedistill.models import vit  # noqa: F401  (registers "vit")
from edgedistill.models.base import create_model
from edgedistill.models.resnet import ResNetSpec
from edgedistill.models.taps import FeatureTaps
from edgedistill.models.vit import ViTSpec


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --- KD ------------------------------------------------------------------------------------------


def test_kd_is_zero_when_logits_match():
    logits = torch.randn(5, 10)
    assert kd_loss(logits, logits.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_is_t_squared_times_batchmean_kl_of_softened_targets():
    s, t = torch.randn(6, 10), torch.randn(6, 10)
    for temp in (1.0, 2.0, 4.0):
        p_t = F.softmax(t / temp, dim=1)
        kl = (p_t * (p_t.log() - F.log_softmax(s / temp, dim=1))).sum(1).mean()
        assert kd_loss(s, t, temp).item() == pytest.approx(temp**2 * kl.item(), rel=1e-5)


def test_kd_gradient_scale_is_steady_at_high_temperature():
    # Hinton 2015: soft-target gradients shrink as 1/T^2; the T^2 factor restores their scale.
    t = torch.randn(8, 10)
    t = t - t.mean(1, keepdim=True)
    norms = []
    for temp in (8.0, 16.0):
        s = torch.zeros(8, 10, requires_grad=True)
        kd_loss(s, t, temp).backward()
        norms.append(s.grad.norm().item())
    assert norms[1] == pytest.approx(norms[0], rel=0.1)


def test_dist_is_zero_for_identical_and_positive_otherwise():
    s, t = torch.randn(8, 10), torch.randn(8, 10)
    assert dist_loss(t, t).item() == pytest.approx(0.0, abs=1e-5)
    assert dist_loss(s, t).item() > 0.1


# --- Hints ---------------------------------------------------------------------------------------


def test_hint_adapter_maps_spatial_channels_and_resolution():
    adapter = HintAdapter(8, 32)
    s, t = torch.randn(2, 8, 8, 8, requires_grad=True), torch.randn(2, 32, 4, 4)
    assert adapter(s, t.shape).shape == t.shape
    assert adapter(torch.randn(2, 8, 2, 2), t.shape).shape == t.shape  # upsampled
    hint_loss(s, t, adapter).backward()
    assert s.grad is not None and adapter.proj[0].weight.grad is not None


def test_hint_adapter_maps_tokens_width_and_count():
    adapter = HintAdapter(32, 64, "tokens", "tokens")
    assert adapter(torch.randn(2, 4, 32), (2, 16, 64)).shape == (2, 16, 64)
    assert adapter(torch.randn(2, 16, 32), (2, 4, 64)).shape == (2, 4, 64)


def test_hint_adapter_bridges_tokens_and_maps():
    assert HintAdapter(32, 16, "tokens", "spatial")(torch.randn(2, 16, 32), (2, 16, 2, 2)).shape == (2, 16, 2, 2)
    assert HintAdapter(16, 32, "spatial", "tokens")(torch.randn(2, 16, 4, 4), (2, 16, 32)).shape == (2, 16, 32)


def test_hint_without_adapter_is_plain_mse_and_rejects_mismatch():
    s, t = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    assert hint_loss(s, t).item() == pytest.approx(F.mse_loss(s, t).item())
    with pytest.raises(ValueError, match="HintAdapter"):
        hint_loss(torch.randn(2, 3, 3, 3), t)


# --- Attention -----------------------------------------------------------------------------------


def test_attention_maps_are_unit_norm_per_sample():
    a = attention_map(torch.randn(3, 16, 4, 4))
    assert a.shape == (3, 16)
    torch.testing.assert_close(a.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(attention_map(torch.randn(3, 16, 8)).norm(dim=1), torch.ones(3))


def test_attention_transfer_is_zero_for_scaled_copies_and_resizes_students():
    t = torch.randn(2, 32, 4, 4)
    # channel count and overall scale do not matter: only where the energy is
    assert attention_transfer_loss(3.0 * t[:, :8], t[:, :8]).item() == pytest.approx(0.0, abs=1e-6)
    s = torch.randn(2, 8, 8, 8, requires_grad=True)
    loss = attention_transfer_loss([s, s[:, :, ::2, ::2]], [t, t])
    assert 0 < loss.item() <= 2.0
    loss.backward()
    assert s.grad is not None


def test_transformer_attention_maps_four_teacher_heads_onto_two_student_heads():
    t = torch.softmax(torch.randn(2, 4, 16, 16), dim=-1)
    grouped = torch.stack([t[:, :2].mean(1), t[:, 2:].mean(1)], dim=1)  # heads (0,1) and (2,3)
    assert transformer_attention_loss(grouped, t).item() == pytest.approx(0.0, abs=1e-6)
    assert transformer_attention_loss(grouped, t, head_map=[[0, 1], [2, 3]]).item() == pytest.approx(0.0, abs=1e-6)
    assert transformer_attention_loss(grouped, t, head_map=[[2, 3], [0, 1]]).item() > 1e-3
    s_logits = torch.randn(2, 2, 16, 16, requires_grad=True)
    loss = transformer_attention_loss(torch.softmax(s_logits, -1), t)
    assert loss.item() > 0
    loss.backward()
    assert s_logits.grad is not None


def test_transformer_attention_handles_indivisible_heads_and_token_counts():
    t = torch.softmax(torch.randn(2, 3, 16, 16), dim=-1)
    s = torch.softmax(torch.randn(2, 2, 4, 4), dim=-1)
    loss = transformer_attention_loss(s, t)
    assert math.isfinite(loss.item()) and loss.item() >= 0


# --- RKD -----------------------------------------------------------------------------------------


def test_rkd_distance_term_ignores_uniform_scaling():
    t = torch.randn(8, 16)
    s = torch.randn(8, 4)
    d = rkd_loss(s, t, w_dist=1.0, w_angle=0.0)
    assert rkd_loss(5.0 * s, t, 1.0, 0.0).item() == pytest.approx(d.item(), rel=1e-4)
    assert rkd_loss(s, 0.1 * t, 1.0, 0.0).item() == pytest.approx(d.item(), rel=1e-4)
    assert rkd_loss(3.0 * t, t).item() == pytest.approx(0.0, abs=1e-5)


def test_rkd_gradients_are_finite():
    s = torch.randn(6, 4, requires_grad=True)
    rkd_loss(s, torch.randn(6, 10)).backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


# --- Weights -------------------------------------------------------------------------------------


def test_parse_loss_weights_reads_every_key():
    w = parse_loss_weights("kd=1.0,hint=0.5,attention=0.5,rkd=0.2,T=4,ce=0.5")
    assert w == LossWeights(ce=0.5, kd=1.0, hint=0.5, attention=0.5, rkd=0.2, temperature=4.0)
    assert parse_loss_weights(" dist = 1 ") == LossWeights(dist=1.0)
    assert parse_loss_weights("") == LossWeights()
    assert parse_loss_weights(w.to_str()) == w


@pytest.mark.parametrize(
    "text, message",
    [
        ("kd=1,kl=2", "valid keys: T, ce, kd"),
        ("kd=abc", "not a number"),
        ("kd", "no '='"),
        ("kd=-1", ">= 0"),
        ("T=0", "> 0"),
        ("kd=1,kd=2", "twice"),
    ],
)
def test_parse_loss_weights_rejects_with_a_useful_message(text, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_loss_weights(text)
    assert isinstance(err.value, InputError)


# --- Composition ---------------------------------------------------------------------------------

ALL_ON = LossWeights(ce=1.0, kd=1.0, hint=1.0, attention=1.0, rkd=1.0, dist=1.0, temperature=4.0)


def _step(teacher, student, weights, x, y):
    loss_fn = DistillationLoss(teacher, student, weights, x)
    with torch.no_grad(), FeatureTaps(teacher, loss_fn.paths_teacher) as t_taps:
        t_logits = teacher(x)
    with FeatureTaps(student, loss_fn.paths_student) as s_taps:
        s_logits = student(x)
    total, parts = loss_fn(s_logits, y, t_logits, s_taps.outputs, t_taps.outputs)
    total.backward()
    return loss_fn, total, parts


def _check_all_components(teacher, student):
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    loss_fn, total, parts = _step(teacher.eval(), student.train(), ALL_ON, x, y)
    assert math.isfinite(total.item())
    assert set(parts) == {"ce", "kd", "hint", "attention", "rkd", "dist"}
    assert sum(parts.values()) == pytest.approx(total.item(), rel=1e-5)
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)
    adapters = list(loss_fn.parameters())
    assert adapters and all(p.grad is not None for p in adapters)
    assert all(p.grad is None for p in teacher.parameters())
    return loss_fn


def test_distillation_loss_resnet_to_resnet():
    teacher = create_model(ResNetSpec(1, 10, (32, 64, 128)))
    student = create_model(ResNetSpec(1, 10, (8, 16, 32)))
    loss_fn = _check_all_components(teacher, student)
    assert loss_fn.paths_student == ["stages.0", "stages.1", "stages.2", "pool"]
    assert not loss_fn.terms["attention"].on_probs


def test_distillation_loss_vit_to_vit_with_other_dims_and_heads():
    teacher = create_model(ViTSpec(1, 10, 8, dim=64, depth=4, heads=4))
    student = create_model(ViTSpec(1, 10, 8, dim=32, depth=2, heads=2))
    loss_fn = _check_all_components(teacher, student)
    assert loss_fn.terms["attention"].on_probs
    assert "blocks.3.attn.attn_probs" in loss_fn.paths_teacher


def test_distillation_loss_across_families():
    teacher = create_model(ResNetSpec(1, 10, (32, 64, 128)))
    student = create_model(ViTSpec(1, 10, 8, patch_size=4, dim=32, depth=2, heads=2))
    _check_all_components(teacher, student)


def test_only_requested_components_are_computed_and_tapped():
    teacher = create_model(ResNetSpec(1, 10, (32, 64, 128)))
    student = create_model(ResNetSpec(1, 10, (8, 16, 32)))
    x = torch.randn(4, 1, 8, 8)
    kd_only = DistillationLoss(teacher, student, parse_loss_weights("kd=1,ce=0"), x)
    assert kd_only.paths_teacher == [] and kd_only.paths_student == [] and not list(kd_only.parameters())
    total, parts = kd_only(student(x), None, teacher(x).detach(), {}, {})
    assert set(parts) == {"kd"} and math.isfinite(total.item())
    hint_only = DistillationLoss(teacher, student, parse_loss_weights("hint=1"), x)
    assert hint_only.paths_teacher == ["stages.0", "stages.1", "stages.2"]
    with pytest.raises(KeyError, match="paths_student"):
        hint_only(student(x), torch.zeros(4, dtype=torch.long), None, {}, {})


def test_teacher_side_can_be_cached_and_reused():
    teacher = create_model(ViTSpec(1, 10, 8, dim=64, depth=2, heads=4)).eval()
    student = create_model(ViTSpec(1, 10, 8, dim=32, depth=2, heads=2))
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    loss_fn = DistillationLoss(teacher, student, ALL_ON, x)
    with torch.no_grad(), FeatureTaps(teacher, loss_fn.paths_teacher) as taps:
        cached_logits = teacher(x)
    cached = {k: v.clone() for k, v in taps.outputs.items()}
    for _ in range(2):  # the teacher is not run again
        with FeatureTaps(student, loss_fn.paths_student) as s_taps:
            s_logits = student(x)
        total, _ = loss_fn(s_logits, y, cached_logits, s_taps.outputs, cached)
        total.backward()
        assert math.isfinite(total.item())
