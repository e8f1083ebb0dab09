"""The shared training loop: resumable bit for bit, loud on divergence, cheap with a teacher, and
able to train every distillation strategy on both model families."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from edgedistill.data.dataset import Split
from edgedistill.data.digits import load_digits_dataset
from edgedistill.distill.batches import shift_views
from edgedistill.distill.losses import LossWeights
from edgedistill.distill.teacher_cache import TeacherCache, teacher_outputs
from edgedistill.distill.trainer import TrainConfig, TrainingDivergedError, train
from edgedistill.models.base import create_model
from edgedistill.models.resnet import ResNetSpec
from edgedistill.models.vit import ViTSpec


@pytest.fixture(scope="module")
def tiny():
    """160 training and 40 validation digits: enough for the loop's every branch, fast on CPU."""
    d = load_digits_dataset()
    return dataclasses.replace(
        d,
        train=Split(d.train.images[:160], d.train.labels[:160]),
        val=Split(d.val.images[:40], d.val.labels[:40]),
    )


def _resnet(widths=(4, 8), depths=(1, 1), seed=0):
    torch.manual_seed(seed)
    return create_model(ResNetSpec(1, 10, widths, depths))


def _vit(dim=8, depth=1, heads=1, seed=0):
    torch.manual_seed(seed)
    return create_model(ViTSpec(1, 10, 8, 2, dim, depth, heads))


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs"


class _Killed(Exception):
    pass


def _kill_after(epoch: int):
    def progress(label, done, total, info):
        if done == epoch:
            raise _Killed(f"simulated kill after epoch {done}")

    return progress


# --- checkpoint / resume ----------------------------------------------------------------------


@pytest.mark.parametrize("with_teacher", [False, True], ids=["scratch", "kd+hint, augmented"])
def test_a_run_killed_after_epoch_2_and_resumed_ends_bitwise_equal_to_an_uninterrupted_run(
    tiny, tmp_path, with_teacher
):
    teacher = _resnet((8, 16), (1, 1), seed=7) if with_teacher else None
    weights = LossWeights(ce=0.5, kd=0.5, hint=0.5, temperature=2) if with_teacher else None
    cfg = TrainConfig(epochs=4, batch_size=32, seed=3, augment=with_teacher)

    straight = _resnet(seed=1)
    ref = train(straight, tiny, cfg, teacher=teacher, weights=weights)

    # Configured for 4 epochs from the start (OneCycleLR's length depends on it), killed after 2.
    with pytest.raises(_Killed):
        train(_resnet(seed=1), tiny, cfg, teacher=teacher, weights=weights,
              checkpoint_dir=tmp_path, progress=_kill_after(2))
    resumed = _resnet(seed=99)  # the checkpoint, not the fresh initialisation, decides
    res = train(resumed, tiny, cfg, teacher=teacher, weights=weights, checkpoint_dir=tmp_path)

    _assert_same_weights(straight, resumed)
    assert [h.loss for h in res.history] == [h.loss for h in ref.history]
    assert (res.best_epoch, res.best_val_acc) == (ref.best_epoch, ref.best_val_acc)


def test_a_finished_run_restarted_with_its_checkpoint_does_not_train_again(tiny, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=32)
    first = _resnet()
    train(first, tiny, cfg, checkpoint_dir=tmp_path)
    again = _resnet(seed=5)
    res = train(again, tiny, cfg, checkpoint_dir=tmp_path)
    assert len(res.history) == 2
    _assert_same_weights(first, again)


# --- divergence ---------------------------------------------------------------------------------


def test_nan_loss_raises_and_keeps_the_last_good_checkpoint(tiny, tmp_path):
    model = _resnet()

    def poison_after_epoch_2(label, done, total, info):
        if done == 2:  # the checkpoint of epoch 2 is already written
            with torch.no_grad():
                model.head.weight.fill_(float("nan"))

    with pytest.raises(TrainingDivergedError) as err:
        train(model, tiny, TrainConfig(epochs=4, batch_size=32), checkpoint_dir=tmp_path,
              progress=poison_after_epoch_2)
    assert "epoch 3" in str(err.value)
    assert str(tmp_path / "checkpoint.pt") in str(err.value)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert len(state["result"]["history"]) == 2
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_nan_in_the_data_raises_a_diverged_error_that_says_what_to_do(tiny):
    images = tiny.train.images.astype("float32")
    images[0, 0, 0, 0] = float("nan")
    bad = dataclasses.replace(tiny, train=Split(images, tiny.train.labels))
    with pytest.raises(TrainingDivergedError, match="NaN"):
        train(_resnet(), bad, TrainConfig(epochs=1, batch_size=160))


# --- the teacher's cached outputs -------------------------------------------------------------


def test_teacher_outputs_are_cached_without_augmentation(tiny):
    res = train(_resnet(), tiny, TrainConfig(epochs=1, batch_size=32), teacher=_resnet((8, 16), seed=7),
                weights=LossWeights(ce=0.5, kd=0.5))
    assert res.teacher_cached


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_the_cached_teacher_logits_are_handed_on_exactly_as_predicting_the_split_gives_them(tiny, tmp_path, where):
    """QAT reads the teacher's training-split logits (BuildContext.teacher_train_logits): the
    distillation cache hands them on, so the teacher runs over the split once per build."""
    from edgedistill.distill.evaluation import predict_split

    teacher, got = _resnet((8, 16), seed=7), []
    cfg = TrainConfig(epochs=1, batch_size=32, cache_memory_mb=0 if where == "disk" else 256)
    train(_resnet(), tiny, cfg, teacher=teacher, weights=LossWeights(ce=0.5, kd=0.5), checkpoint_dir=tmp_path,
          teacher_logits_to=got.append)
    (logits,) = got
    torch.testing.assert_close(logits, predict_split(teacher.eval(), tiny, "train"), rtol=0, atol=0)
    shifted = []  # nine shifted views: not the images as they are, nothing is handed on
    train(_resnet(), tiny, dataclasses.replace(cfg, augment=True), teacher=teacher,
          weights=LossWeights(ce=0.5, kd=0.5), teacher_logits_to=shifted.append)
    assert shifted == []


def test_with_augmentation_all_nine_views_are_cached_unless_over_the_limit(tiny):
    teacher, w = _resnet((8, 16), seed=7), LossWeights(ce=0.5, kd=0.5)
    cached = train(_resnet(), tiny, TrainConfig(epochs=1, batch_size=32, augment=True), teacher=teacher, weights=w)
    per_batch = train(_resnet(), tiny, TrainConfig(epochs=1, batch_size=32, augment=True, cache_limit_mb=0),
                      teacher=teacher, weights=w)
    assert cached.teacher_cached and not per_batch.teacher_cached
    assert cached.history[0].loss == pytest.approx(per_batch.history[0].loss, rel=1e-4)


def test_a_cache_over_the_memory_limit_goes_to_disk_and_trains_the_same(tiny, tmp_path):
    teacher, w = _resnet((8, 16), seed=7), LossWeights(ce=0.5, kd=0.5, hint=0.5)
    in_memory = train(_resnet(), tiny, TrainConfig(epochs=1, batch_size=32), teacher=teacher, weights=w)
    on_disk = train(_resnet(), tiny, TrainConfig(epochs=1, batch_size=32, cache_memory_mb=0), teacher=teacher,
                    weights=w, checkpoint_dir=tmp_path)
    assert in_memory.teacher_cached and on_disk.teacher_cached
    assert on_disk.history[0].loss == pytest.approx(in_memory.history[0].loss, rel=1e-5)
    assert not list(tmp_path.glob("teacher-cache-*"))  # the cache lives as long as the call


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_the_cached_view_is_exactly_what_the_teacher_sees_on_the_students_augmented_batch(tiny, tmp_path, where):
    teacher = _resnet((8, 16), seed=7).eval()
    x = torch.from_numpy(tiny.batch("train", slice(None)))
    paths = ["stages.0"]
    cache = TeacherCache(teacher, paths, len(x), lambda a, b: x[a:b], 9, float(x.amin()), torch.device("cpu"),
                         use_bf16=False, store=tmp_path if where == "disk" else None, chunk=64)
    assert cache.on_disk == (where == "disk")
    assert tiny.fill_value() == float(x.amin())
    idx = torch.tensor([5, 0, 77, 159, 12])
    views = torch.tensor([0, 4, 8, 3, 7])
    logits, feats = cache.lookup(idx, views)
    direct_logits, direct_feats = teacher_outputs(teacher, paths, shift_views(x[idx], views), use_bf16=False)
    torch.testing.assert_close(logits, direct_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(feats["stages.0"], direct_feats["stages.0"], rtol=1e-5, atol=1e-5)


def test_view_4_is_the_unshifted_image_and_shifts_fill_with_background(tiny):
    x = torch.from_numpy(tiny.batch("train", slice(None)))[:3]
    assert torch.equal(shift_views(x, torch.full((3,), 4)), x)
    down_right = shift_views(x, torch.zeros(3, dtype=torch.long))  # dy = dx = -1: content moves down-right
    assert torch.equal(down_right[:, :, 1:, 1:], x[:, :, :-1, :-1])
    assert torch.all(down_right[:, :, 0, :] == x.amin())


# --- every strategy on both families ----------------------------------------------------------

STRATEGIES = {
    "kd": LossWeights(ce=0.5, kd=0.5, temperature=4),
    "hint": LossWeights(ce=1.0, hint=1.0),
    "attention": LossWeights(ce=1.0, attention=1.0),
    "rkd": LossWeights(ce=1.0, rkd=1.0),
    "dist": LossWeights(ce=1.0, dist=1.0),
    "combined": LossWeights(ce=0.5, kd=0.5, hint=0.5, attention=0.5, rkd=0.5, dist=0.5, temperature=2),
}
FAMILIES = {
    "resnet": (lambda: _resnet((8, 16, 32), (1, 1, 1), seed=7), lambda: _resnet((4, 8), (1, 1))),
    "vit": (lambda: _vit(16, 2, 2, seed=7), lambda: _vit(8, 1, 1)),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_trains_on_both_families(tiny, family, strategy):
    make_teacher, make_student = FAMILIES[family]
    small = dataclasses.replace(tiny, train=Split(tiny.train.images[:48], tiny.train.labels[:48]))
    student = make_student()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    res = train(student, small, TrainConfig(epochs=1, batch_size=16, augment=True), teacher=make_teacher(),
                weights=STRATEGIES[strategy])
    record = res.history[0]
    assert math.isfinite(record.loss)
    expected = {k for k in ("kd", "hint", "attention", "rkd", "dist") if getattr(STRATEGIES[strategy], k) > 0}
    assert expected <= set(record.parts), f"{strategy} on {family} logged only {sorted(record.parts)}"
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())
