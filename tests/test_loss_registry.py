"""The loss registry: a new loss is one registered class, which --loss strings, LossWeights and
DistillationLoss then know with no other edit; a recipe's string names only the losses it uses."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from edgedistill.distill.loss_functions import kd_loss
from edgedistill.distill.loss_registry import registered_losses, unregister_loss
from edgedistill.distill.losses import (
    DistillationLoss,
    LossBatch,
    LossOption,
    LossTerm,
    LossWeights,
    parse_loss_weights,
    register_loss,
)
from edgedistill.distill.recipe import DEFAULT_LOSS
from edgedistill.errors import InputError
from edgedistill.models.base import create_model
from edgedistill.models.resnet import ResNetSpec


class MarginTerm(LossTerm):
    """A toy loss defined here and nowhere else: a hinge on the true-class logit margin."""

    name = "margin"
    options = (LossOption("margin_width", 1.0, key="m", positive=True, hint="m=1 is typical"),)
    needs_labels = True

    def forward(self, batch: LossBatch) -> torch.Tensor:
        logits, labels = batch.student_logits, batch.labels
        true = logits.gather(1, labels[:, None])
        others = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf")).amax(1, keepdim=True)
        return F.relu(self.option("margin_width") - (true - others)).mean()


@pytest.fixture
def margin():
    register_loss(MarginTerm)
    yield MarginTerm
    unregister_loss("margin")


def _models():
    torch.manual_seed(0)
    return create_model(ResNetSpec(1, 10, (16, 32), (1, 1))), create_model(ResNetSpec(1, 10, (8, 16), (1, 1)))


def test_a_loss_registered_in_one_file_trains_through_parse_and_distillation_loss(margin):
    w = parse_loss_weights("ce=0.5,margin=0.25,m=2")
    assert w.margin == 0.25 and w.margin_width == 2.0
    assert w.to_str() == "ce=0.5,margin=0.25,m=2.0"
    assert parse_loss_weights(w.to_str()) == w
    teacher, student = _models()
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    loss_fn = DistillationLoss(teacher, student, w, x)
    total, parts = loss_fn(student(x), y, None, {}, {})
    assert list(parts) == ["ce", "margin"]  # summed after the built-ins
    expected = torch.stack([0.5 * F.cross_entropy(student(x), y), 0.25 * MarginTerm(1, {"margin_width": 2})(
        LossBatch(student(x), y, None, {}, {}))]).sum()
    assert torch.equal(total, expected)
    total.backward()
    assert all(p.grad is not None for p in student.parameters())


def test_a_registered_loss_takes_part_in_the_error_messages(margin):
    with pytest.raises(InputError, match="valid keys: T, m, ce, .*margin"):
        parse_loss_weights("marginn=1")
    with pytest.raises(ValueError, match="margin_width m must be > 0"):
        parse_loss_weights("margin=1,m=0")


def test_a_new_loss_changes_no_existing_recipe_string(margin):
    assert DEFAULT_LOSS.to_str() == "ce=0.5,kd=0.5,T=4.0"
    assert LossWeights(ce=1.0, hint=0.5).to_str() == "ce=1.0,hint=0.5"


def test_built_ins_are_summed_in_the_order_of_the_original_loss():
    assert list(registered_losses())[:6] == ["ce", "kd", "dist", "hint", "attention", "rkd"]


def test_the_string_names_only_losses_in_use_and_their_options():
    assert LossWeights().to_str() == "ce=1.0"
    assert LossWeights(ce=1.0, temperature=2.0).to_str() == "ce=1.0"  # T belongs to kd, which is off
    assert LossWeights(ce=0.0, kd=1.0).to_str() == "ce=0.0,kd=1.0,T=4.0"  # ce off its default is said
    assert LossWeights(kd=1, temperature=4).to_str() == "ce=1.0,kd=1.0,T=4.0"  # ints written as floats
    for w in (LossWeights(), LossWeights(ce=0.0, kd=1.0), LossWeights(ce=0.5, kd=0.5, hint=1, attention=1,
                                                                      rkd=1, dist=1, temperature=2)):
        assert parse_loss_weights(w.to_str()) == w


def test_weights_compare_by_the_loss_they_train_and_copy_with_replace():
    assert LossWeights(ce=1.0, temperature=2.0) == LossWeights(ce=1.0)  # unused options don't count
    assert LossWeights(kd=1.0, temperature=2.0) != LossWeights(kd=1.0)
    w = dataclasses.replace(DEFAULT_LOSS, hint=1.0)
    assert (w.ce, w.kd, w.hint, w.temperature) == (0.5, 0.5, 1.0, 4.0) and DEFAULT_LOSS.hint == 0.0
    assert dataclasses.replace(DEFAULT_LOSS) == DEFAULT_LOSS
    with pytest.raises(TypeError, match="no loss or option 'kl'"):
        LossWeights(kl=1.0)
    with pytest.raises(AttributeError, match="read-only"):
        w.kd = 2.0


def test_registration_refuses_clashing_names():
    class Twice(LossTerm):
        name = "kd"

    class Shadow(LossTerm):
        name = "shadow"
        options = (LossOption("tau", 1.0, key="T"),)

    with pytest.raises(ValueError, match="registered already"):
        register_loss(Twice)
    with pytest.raises(ValueError, match="clashes"):
        register_loss(Shadow)
    assert "shadow" not in registered_losses()


def test_the_default_recipe_sums_exactly_as_before():
    """0.5 * CE + 0.5 * KD(T=4), the two-term stack-sum the trainer always used, bit for bit."""
    torch.manual_seed(1)
    s, t, y = torch.randn(16, 10, requires_grad=True), torch.randn(16, 10), torch.randint(0, 10, (16,))
    teacher, student = _models()
    total, _ = DistillationLoss(teacher, student, DEFAULT_LOSS, torch.randn(2, 1, 8, 8))(s, y, t, {}, {})
    (grad,) = torch.autograd.grad(total, s)
    ce, kd = 0.5 * F.cross_entropy(s, y), 0.5 * kd_loss(s, t, 4.0)
    for before in (torch.stack([ce, kd]).sum(), ce + kd):
        assert torch.equal(total, before)
        assert torch.equal(grad, torch.autograd.grad(before, s, retain_graph=True)[0])
