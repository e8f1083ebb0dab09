"""The input resolution is searched: students are priced at the data's size and below, one may run
at a lower resolution than the teacher, it trains on the same images resized while the teacher
scores them at full size, and the bundle tells the app the size and the resize; ``edgedistill
verify`` feeds the full-size sample images exactly that way."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_timeouts import CLI_TIMEOUT_S
from safetensors.torch import save_file

from edgedistill.data.load import load_dataset
from edgedistill.data.resize import resize_images
from edgedistill.distill.losses import LossWeights
from edgedistill.distill.evaluation import evaluate_split
from edgedistill.distill.trainer import TrainConfig, train
from edgedistill.hardware.targets import load_target
from edgedistill.models import create_model
from edgedistill.models.resnet import ResNetSpec
from edgedistill.models.staged import layout_for
from edgedistill.select.candidates import evaluate_candidates, search_resolutions, select_student

SIZE = 128


def test_the_ladder_runs_from_the_data_size_down_to_forty_percent_of_it():
    assert search_resolutions((224, 224)) == [(224, 224), (192, 192), (160, 160), (128, 128), (96, 96)]
    assert search_resolutions((128, 128)) == [(128, 128), (96, 96)]
    assert search_resolutions((96, 96)) == [(96, 96)]
    assert search_resolutions((8, 8)) == [(8, 8)]  # small inputs: not searched
    assert search_resolutions((240, 320)) == [(240, 320), (224, 299), (192, 256), (160, 213), (128, 171),
                                               (96, 128)]


def _spec(classes: int = 2) -> ResNetSpec:
    return ResNetSpec(3, classes, (8, 16, 32, 64), (1, 1, 1, 1), stem_kernel=7,
                      **layout_for((SIZE, SIZE), 4, stem_pool=True))


def test_each_spec_is_priced_at_each_resolution_and_ranked_by_flops_above_32_px():
    target = load_target("host")
    cands = evaluate_candidates(_spec(), (3, SIZE, SIZE), target, 10**9, 1.0)
    by_spec: dict[str, list] = {}
    for c in cands:
        by_spec.setdefault(c.spec.describe(), []).append(c)
    for group in by_spec.values():
        assert sorted(c.resolution for c in group if c.resolution) == [(96, 96)] and len(group) == 2
        native, low = sorted(group, key=lambda c: c.resolution is not None)
        assert low.flops < native.flops and low.params == native.params
        assert low.predicted_latency_ms < native.predicted_latency_ms
        assert low.name.endswith("@96x96") and low.key != native.key
    assert [c.flops for c in cands] == sorted((c.flops for c in cands), reverse=True)
    # Below the budget of every native-size student, the choice is one at a lower resolution.
    budget = 0.999 * min(c.predicted_latency_ms for c in cands if c.resolution is None)
    sel = select_student(_spec(), (3, SIZE, SIZE), target.with_budgets(budget, None), 10**9, 1.0)
    assert sel.chosen is not None and sel.chosen.resolution == (96, 96)
    assert "resolution" in sel.rule


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two classes of 128 px RGB images: a red or a blue square somewhere on noise."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, (n, SIZE, SIZE, 3), dtype=np.uint8)
    y = np.arange(n) % 2
    for i in range(n):
        r, c = rng.integers(0, SIZE - 48, 2)
        x[i, r : r + 48, c : c + 48, 0 if y[i] == 0 else 2] = 230
    return x, y


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("resolution")
    x, y = _images(96, 0)
    xt, yt = _images(40, 1)
    np.savez(root / "squares.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    data = load_dataset(root / "squares.npz")
    torch.manual_seed(0)
    teacher = create_model(_spec())
    train(teacher, data, TrainConfig(epochs=4, batch_size=16, lr=3e-3))
    save_file(teacher.state_dict(), str(root / "teacher.safetensors"))
    (root / "teacher_factory.py").write_text(textwrap.dedent(f"""
        from edgedistill.models import create_model
        from edgedistill.models.resnet import ResNetSpec

        def build():
            return create_model(ResNetSpec(**{_spec().__dict__!r}))
    """))
    return root, data, teacher


@pytest.mark.slow
def test_a_student_trains_at_its_resolution_against_the_teacher_at_full_size(workspace):
    _, data, teacher = workspace
    torch.manual_seed(1)
    student = create_model(_spec())
    res = train(student, data, TrainConfig(epochs=2, batch_size=16), teacher=teacher,
                weights=LossWeights(ce=0.5, kd=0.5, hint=0.5), student_size=(96, 96))
    assert res.teacher_cached and set(res.history[0].parts) == {"ce", "kd"}  # the hint drops out
    small = data.resized((96, 96))
    assert small.image_shape == (96, 96, 3) and small.resized_from is data
    np.testing.assert_array_equal(small.test.images[:4], resize_images(data.test.images[:4], (96, 96)))
    assert evaluate_split(student, small, "test") > 0.5


def _tight_target(root: Path) -> Path:
    """rpi4 with a latency budget just under every native-size student's predicted latency: a
    device target (benchmarked here, so not re-chosen on the host's timings), no gate on latency."""
    rpi4 = (Path(__file__).resolve().parents[1] / "targets" / "rpi4.toml").read_text()
    path = root / "squares-pi.toml"
    path.write_text(rpi4.replace('name = "rpi4"', 'name = "squares-pi"'))
    native = [c for c in evaluate_candidates(_spec(), (3, SIZE, SIZE), load_target(str(path)), 10**9, 10.0)
              if c.resolution is None]
    budget = 0.999 * min(c.predicted_latency_ms for c in native)
    path.write_text(rpi4.replace('name = "rpi4"', 'name = "squares-pi"')
                    .replace("latency_ms = 33.0", f"latency_ms = {budget:.6f}"))
    return path


@pytest.mark.slow
def test_a_build_at_a_searched_resolution_ships_the_resize_and_verify_replays_it(workspace):
    root, data, _ = workspace
    out = root / "dist"
    cmd = [sys.executable, "-m", "edgedistill", "build", "--target", str(_tight_target(root)),
           "--data", str(root / "squares.npz"),
           "--teacher", f"{root / 'teacher_factory.py'}:build", "--weights", str(root / "teacher.safetensors"),
           "--epochs", "3", "--qat-epochs", "1", "--bench-runs", "5", "--arm-board", "off",
           "--out", str(out), "--run-dir", str(root / "run")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bundle = out / "squares-pi"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["input"]["resize"]["size"] == [96, 96]
    assert manifest["input"]["resize"]["training_data_size"] == [SIZE, SIZE]
    assert 96 in manifest["input"]["shape"] and SIZE not in manifest["input"]["shape"]
    assert manifest["selection"]["chosen"].endswith("@96x96")
    assert "Input resolution 96x96, chosen by the resolution search" in (bundle / "report.md").read_text()
    with np.load(bundle / "verification_sample.npz") as sample:
        assert sample["images"].shape[1:3] == (SIZE, SIZE)  # full size: verify resizes as the app does
    check = subprocess.run([sys.executable, "-m", "edgedistill", "verify", str(bundle)], capture_output=True,
                           text=True, timeout=CLI_TIMEOUT_S)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    assert "parity" in check.stdout


def test_crop_views_are_affine_boxes_inside_the_image_and_a_flip_mirrors():
    from edgedistill.distill.batches import CROP_SCALE, crop_views, draw_crops

    theta = draw_crops(500, torch.Generator().manual_seed(0))
    w, h = theta[:, 0, 0].abs(), theta[:, 1, 1]
    assert torch.all(w + theta[:, 0, 2].abs() <= 1 + 1e-6) and torch.all(h + theta[:, 1, 2].abs() <= 1 + 1e-6)
    area = w * h
    assert area.min() >= CROP_SCALE[0] * 0.99 and area.max() <= 1.0 + 1e-6
    assert 0.4 < float((theta[:, 0, 0] < 0).float().mean()) < 0.6  # half of them flipped
    assert torch.all(draw_crops(50, torch.Generator().manual_seed(0), flip=False)[:, 0, 0] > 0)
    x = torch.rand(2, 3, 16, 16)
    identity = torch.eye(2, 3).expand(2, 2, 3).clone()
    torch.testing.assert_close(crop_views(x, identity), x, atol=1e-5, rtol=0)
    mirror = identity.clone()
    mirror[:, 0, 0] = -1
    torch.testing.assert_close(crop_views(x, mirror), x.flip(-1), atol=1e-5, rtol=0)
    assert crop_views(x, None, (8, 8)).shape == (2, 3, 8, 8)


@pytest.mark.slow
def test_above_32_px_augment_crops_one_view_for_both_models_with_the_teacher_online(workspace, monkeypatch):
    from edgedistill.distill import trainer

    _, data, teacher = workspace
    seen = []
    original = trainer.teacher_outputs

    def spy(model, paths, x, use_bf16):
        seen.append(x.shape)
        return original(model, paths, x, use_bf16)

    monkeypatch.setattr(trainer, "teacher_outputs", spy)
    torch.manual_seed(2)
    res = train(create_model(_spec()), data, TrainConfig(epochs=1, batch_size=32, augment=True), teacher=teacher,
                weights=LossWeights(ce=0.5, kd=0.5), student_size=(96, 96))
    assert not res.teacher_cached and res.history[0].loss > 0
    assert seen and all(tuple(s[2:]) == (SIZE, SIZE) for s in seen)  # the teacher scores the full-size view
