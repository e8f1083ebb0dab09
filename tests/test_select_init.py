"""Students initialised from the teacher: consistent slicing, top-L1 channels, and a real head start."""

import torch
import torch.nn.functional as F

from edgedistill.models import create_model
from edgedistill.models.init import evenly_spaced, init_student_from_teacher
from edgedistill.models.mobilenet import MobileNetSpec
from edgedistill.models.resnet import ResNetSpec
from edgedistill.models.vit import ViTSpec


def test_evenly_spaced_keeps_first_and_last():
    assert evenly_spaced(4, 2) == [0, 3]
    assert evenly_spaced(6, 3) == [0, 2, 5] or evenly_spaced(6, 3) == [0, 3, 5]
    assert evenly_spaced(3, 1) == [0]


def test_resnet_slicing_is_consistent_and_keeps_the_largest_l1_filters():
    torch.manual_seed(0)
    teacher = create_model(ResNetSpec(1, 10, (16, 32, 64), (2, 2, 2))).eval()
    w = teacher.stages[0][1].conv1[0].weight
    with torch.no_grad():  # make stage-0 block-1 inner filters 3 and 11 clearly the most important
        w[3] *= 50
        w[11] *= 40
    student = create_model(ResNetSpec(1, 10, (8, 16, 32), (2, 1, 1))).eval()
    report = init_student_from_teacher(teacher, student)
    assert report["initialised"] and report["copied_fraction"] == 1.0
    assert report["blocks"]["stages.0"] == [0, 1] and report["blocks"]["stages.2"] == [0]
    sw = student.stages[0][1].conv1[0].weight
    assert any(torch.equal(sw[i], w[3][report["residual_channels"]["stages.0"]]) for i in range(8))
    assert student(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    # the head reads exactly the kept channels of the last stage
    kept = report["residual_channels"]["stages.2"]
    assert torch.equal(student.head.weight, teacher.head.weight[:, kept])


def test_mobilenet_slicing_follows_expanded_channels_through_the_depthwise_conv():
    torch.manual_seed(0)
    teacher = create_model(MobileNetSpec(1, 10, (16, 32, 64), (2, 2, 2), 4)).eval()
    same = create_model(MobileNetSpec(1, 10, (16, 32, 64), (2, 2, 2), 4)).eval()
    assert init_student_from_teacher(teacher, same)["copied_fraction"] == 1.0
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(same(x), teacher(x))  # the teacher's own shape is copied exactly

    expand = teacher.stages[1][1].expand[0].weight  # 32 -> 128 expanded channels
    with torch.no_grad():
        expand[77] *= 100  # expanded channel 77 of stage-1 block-1 dominates
    student = create_model(MobileNetSpec(1, 10, (8, 16, 32), (1, 2, 1), 4)).eval()
    report = init_student_from_teacher(teacher, student)
    assert report["initialised"] and report["copied_fraction"] == 1.0
    assert report["blocks"] == {"stages.0": [0], "stages.1": [0, 1], "stages.2": [0]}
    res1 = report["residual_channels"]["stages.1"]
    s_expand = student.stages[1][1].expand[0].weight  # 16 -> 64
    row = next(i for i in range(64) if torch.equal(s_expand[i], expand[77][res1]))
    # the depthwise filter and the projection's input column of that channel came along with it
    assert torch.equal(student.stages[1][1].dw[0].weight[row], teacher.stages[1][1].dw[0].weight[77])
    assert torch.equal(student.stages[1][1].project[0].weight[:, row],
                       teacher.stages[1][1].project[0].weight[res1, 77])
    assert student(x).shape == (4, 10)


def test_vit_slicing_keeps_whole_heads_ranked_by_qkvo_l1():
    torch.manual_seed(0)
    teacher = create_model(ViTSpec(1, 10, 8, 2, 32, 4, 4)).eval()
    with torch.no_grad():
        teacher.blocks[3].attn.v.weight[24:32] *= 100  # head 3 of the last block dominates
    student = create_model(ViTSpec(1, 10, 8, 2, 16, 2, 2)).eval()
    report = init_student_from_teacher(teacher, student)
    assert report["initialised"] and report["blocks"] == [0, 3]
    assert 3 in report["heads"]["blocks.1"]
    assert student(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_different_families_are_left_alone_with_a_reason():
    teacher = create_model(ResNetSpec(1, 10, (8, 16), (1, 1)))
    student = create_model(ViTSpec(1, 10, 8, 2, 16, 1, 2))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    report = init_student_from_teacher(teacher, student)
    assert not report["initialised"] and "family" in report["reason"]
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())


def test_an_initialised_student_starts_far_better_than_a_random_one_on_digits():
    """Train a resnet teacher briefly on the real digits, then compare a narrower student (3/4 width,
    same depth) initialised from it with the same student at random initialisation, both untrained."""
    from edgedistill.data.digits import load_digits_dataset

    torch.manual_seed(0)
    data = load_digits_dataset(seed=0)
    x, y = torch.from_numpy(data.batch("train", slice(None))), torch.from_numpy(data.train.labels).long()
    xt, yt = torch.from_numpy(data.batch("test", slice(None))), torch.from_numpy(data.test.labels).long()
    teacher = create_model(ResNetSpec(1, 10, (16, 32, 64), (1, 1, 1)))
    opt = torch.optim.Adam(teacher.parameters(), 3e-3)
    for _ in range(4):
        teacher.train()
        for idx in torch.randperm(len(x)).split(64):
            loss = F.cross_entropy(teacher(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    teacher.eval()

    def evaluate(m):
        with torch.no_grad():
            logits = m.eval()(xt)
        return F.cross_entropy(logits, yt).item(), (logits.argmax(1) == yt).float().mean().item()

    _, teacher_acc = evaluate(teacher)
    assert teacher_acc > 0.85
    spec = ResNetSpec(1, 10, (12, 24, 48), (1, 1, 1))
    torch.manual_seed(1)
    random_loss, random_acc = evaluate(create_model(spec))
    student = create_model(spec)
    init_student_from_teacher(teacher, student, sample=x[:512])
    init_loss, init_acc = evaluate(student)
    assert init_acc > 0.5 and init_acc > random_acc + 0.3
    assert init_loss < random_loss
