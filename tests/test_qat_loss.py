"""QAT fine-tunes with the build's own loss: its logit-level terms run as in distillation, terms on
intermediate features are left out (the exported graph has no module paths to tap), and the
result says which were used and why the others were not."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from edgedistill.data.dataset import Split
from edgedistill.data.digits import load_digits_dataset
from edgedistill.distill.loss_functions import kd_loss
from edgedistill.distill.losses import LossWeights, parse_loss_weights
from edgedistill.distill.recipe import DEFAULT_LOSS
from edgedistill.models.base import create_model
from edgedistill.models.resnet import ResNetSpec
from edgedistill.quantize.qat import NO_TAPS, QATConfig, qat_finetune, qat_loss


def _resnet(widths=(4, 8), seed=0):
    torch.manual_seed(seed)
    return create_model(ResNetSpec(1, 10, widths, (1,) * len(widths)))


ALL_ON = parse_loss_weights("ce=0.5,kd=0.5,dist=0.5,hint=0.5,attention=0.5,rkd=0.5,T=2")


def test_the_default_recipe_runs_whole_and_sums_as_qat_always_did():
    loss = qat_loss(DEFAULT_LOSS, _resnet(), _resnet((8, 16)), have_teacher_logits=True)
    assert loss.used.to_str() == "ce=0.5,kd=0.5,T=4.0" and loss.dropped == {}
    torch.manual_seed(0)
    s, t, y = torch.randn(32, 10, requires_grad=True), torch.randn(32, 10), torch.randint(0, 10, (32,))
    total, _ = loss(s, y, t, {}, {})
    before = 0.5 * F.cross_entropy(s, y)
    before = before + 0.5 * kd_loss(s, t, 4.0)  # the QAT loss before the registry, step by step
    assert torch.equal(total, before)
    assert torch.equal(torch.autograd.grad(total, s)[0], torch.autograd.grad(before, s)[0])


def test_feature_terms_are_dropped_with_the_reason():
    loss = qat_loss(ALL_ON, _resnet(), _resnet((8, 16)), have_teacher_logits=True)
    assert list(loss.terms) == ["ce", "kd", "dist"]
    assert loss.used.to_str() == "ce=0.5,kd=0.5,T=2.0,dist=0.5"
    assert sorted(loss.dropped) == ["attention", "hint", "rkd"]
    assert all(NO_TAPS in why for why in loss.dropped.values())
    assert "embedding" in loss.dropped["rkd"]  # both resnets name one, so the build's rkd tapped it
    assert loss.paths_student == [] and not list(loss.parameters())  # no adapters built


def test_rkd_stays_in_its_logit_form():
    # A teacher without an embedding module: the build ran RKD on the logits, and so does QAT.
    loss = qat_loss(LossWeights(ce=1.0, rkd=1.0), _resnet(), torch.nn.Linear(64, 10), have_teacher_logits=True)
    assert list(loss.terms) == ["ce", "rkd"] and loss.dropped == {}


def test_without_teacher_logits_the_terms_that_need_them_drop_out():
    loss = qat_loss(DEFAULT_LOSS, _resnet(), None, have_teacher_logits=False)
    assert loss.used.to_str() == "ce=0.5" and "teacher's logits" in loss.dropped["kd"]


def test_with_nothing_usable_qat_falls_back_to_the_labels():
    loss = qat_loss(parse_loss_weights("ce=0,hint=1"), _resnet(), _resnet((8, 16)), have_teacher_logits=True)
    assert loss.used.to_str() == "ce=1.0" and list(loss.dropped) == ["hint"]


@pytest.fixture(scope="module")
def small_digits():
    d = load_digits_dataset()
    return dataclasses.replace(d, train=Split(d.train.images[:128], d.train.labels[:128]))


@pytest.mark.slow
def test_qat_result_records_the_loss_it_used_and_what_it_dropped(small_digits):
    student, teacher = _resnet(), _resnet((8, 16), seed=1)
    t_logits = teacher.eval()(torch.from_numpy(small_digits.batch("train", slice(None)))).detach()
    w = LossWeights(ce=0.5, kd=0.5, hint=1.0, temperature=3.0)
    _, _, result = qat_finetune(student, small_digits, t_logits, QATConfig(epochs=1), w, teacher=teacher)
    assert result.loss_used == "ce=0.5,kd=0.5,T=3.0"
    assert list(result.loss_dropped) == ["hint"] and NO_TAPS in result.loss_dropped["hint"]
    assert result.to_dict()["loss_dropped"] == result.loss_dropped  # reaches the stage's JSON


@pytest.mark.slow
def test_the_int8_graph_is_evaluated_without_switching_its_mode_back_and_forth(small_digits, monkeypatch):
    # Each switch re-traces torchao's batch-norm patterns and leaves their fake tensors cached: a
    # 20k-image 224 px build grew 0.5 GB over its val and test passes before the graph said "eval".
    import torchao.quantization.pt2e.export_utils as export_utils

    from edgedistill.distill.evaluation import predict_split

    converted, _, _ = qat_finetune(_resnet(), small_digits, None, QATConfig(epochs=1))
    rewrites = []
    real = export_utils._replace_batchnorm
    monkeypatch.setattr(export_utils, "_replace_batchnorm", lambda m, train_to_eval: (
        rewrites.append(train_to_eval), real(m, train_to_eval))[1])
    assert converted.training is False
    first = predict_split(converted, small_digits, "test", batch_size=16)
    second = predict_split(converted, small_digits, "test", batch_size=16)
    assert rewrites == [] and torch.equal(first, second)
    converted.train()  # the patched methods still switch it when asked
    assert rewrites == [False]
