"""Teacher-assistant chains: assistants of the student's family bridge a large parameter gap in
hops no larger than the threshold, and the chain trains and logs every hop."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from edgedistill.data.dataset import Split
from edgedistill.data.digits import load_digits_dataset
from edgedistill.distill.assistant import distill_chain, plan_assistants, spec_parameters
from edgedistill.distill.losses import LossWeights
from edgedistill.distill.trainer import TrainConfig
from edgedistill.models.base import create_model
from edgedistill.models.resnet import ResNetSpec
from edgedistill.models.vit import ViTSpec

RESNET_T = ResNetSpec(1, 10, (32, 64, 128), (2, 2, 2))
RESNET_S = ResNetSpec(1, 10, (8, 16, 32), (1, 1, 1))
VIT_T = ViTSpec(1, 10, 8, 2, dim=128, depth=6, heads=4)
VIT_S = ViTSpec(1, 10, 8, 2, dim=24, depth=2, heads=2)


def _sizes(teacher, student, chain):
    return [spec_parameters(s) for s in (teacher, *chain, student)]


@pytest.mark.parametrize("teacher,student", [(RESNET_T, RESNET_S), (VIT_T, VIT_S)], ids=["resnet", "vit"])
@pytest.mark.parametrize("threshold", [10.0, 4.0])
def test_assistants_keep_every_hop_under_the_threshold(teacher, student, threshold):
    chain = plan_assistants(teacher, student, threshold)
    sizes = _sizes(teacher, student, chain)
    assert sizes[0] / sizes[-1] > threshold  # the direct hop would not do
    assert chain, "a gap over the threshold needs an assistant"
    assert all(a > b for a, b in zip(sizes, sizes[1:])), "largest first, strictly shrinking"
    assert all(a / b <= threshold for a, b in zip(sizes, sizes[1:])), sizes
    assert all(s.family == student.family for s in chain)


def test_one_assistant_sits_near_the_geometric_mean():
    (assistant,) = plan_assistants(RESNET_T, RESNET_S, 10.0)
    p_t, p_a, p_s = _sizes(RESNET_T, RESNET_S, [assistant])
    assert 0.5 < p_a / (p_t * p_s) ** 0.5 < 2.0


def test_no_assistant_when_the_gap_is_small():
    assert plan_assistants(ResNetSpec(1, 10, (16, 32, 64), (1, 1, 1)), RESNET_S, 10.0) == []


def test_families_must_match():
    with pytest.raises(ValueError, match="one family"):
        plan_assistants(VIT_T, RESNET_S)


@pytest.mark.slow
def test_the_chain_trains_teacher_to_assistant_to_student_and_logs_it(caplog):
    d = load_digits_dataset()
    tiny = dataclasses.replace(d, train=Split(d.train.images[:96], d.train.labels[:96]),
                               val=Split(d.val.images[:32], d.val.labels[:32]))
    torch.manual_seed(0)
    teacher = create_model(ResNetSpec(1, 10, (16, 32), (2, 2)))
    student = create_model(ResNetSpec(1, 10, (4, 8), (1, 1)))
    before = [p.clone() for p in student.parameters()]
    with caplog.at_level(logging.INFO, logger="edgedistill.distill.assistant"):
        result = distill_chain(teacher, student, tiny, TrainConfig(epochs=1, batch_size=32),
                               LossWeights(ce=0.5, kd=0.5), ratio_threshold=4.0)
    assert result.assistants, "a 20x gap with a 4x threshold needs assistants"
    assert len(result.hops) == len(result.assistants) + 1
    assert all(h.ratio <= 4.0 for h in result.hops)
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))
    text = caplog.text
    assert text.count("distillation hop") == len(result.hops)
    assert "assistant" in text and result.describe() in text


def test_vit_chain_runs_a_hop_per_assistant():
    d = load_digits_dataset()
    tiny = dataclasses.replace(d, train=Split(d.train.images[:64], d.train.labels[:64]))
    torch.manual_seed(0)
    teacher = create_model(ViTSpec(1, 10, 8, 2, dim=64, depth=4, heads=4))
    student = create_model(ViTSpec(1, 10, 8, 2, dim=8, depth=1, heads=1))
    result = distill_chain(teacher, student, tiny, TrainConfig(epochs=1, batch_size=32),
                           LossWeights(ce=0.5, kd=0.5), ratio_threshold=10.0)
    assert len(result.hops) == len(result.assistants) + 1 >= 2
    assert result.hops[0].student.startswith("vit")
