"""The pieces of a multi-process build that need no second process: how shards and the global
batch are dealt, what a job sends, which exit code a failed torchrun job ends with, and that the
collective helpers stay free of the trainer. The real two-process builds are test_build_ddp.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
import pytest
from torch import nn

from edgedistill.distill import jobs
from edgedistill.distill.ddp import per_rank_batch, share
from edgedistill.errors import RankLostError
from edgedistill.ranks import exit_code_of

REPO = Path(__file__).resolve().parents[1]


def test_a_steps_global_batch_is_dealt_out_and_weighted_to_its_mean():
    perm = torch.randperm(1000, generator=torch.Generator().manual_seed(1))
    views = torch.arange(1000) % 9
    for world in (1, 2, 3, 4):
        b = per_rank_batch(64, world)
        for start in range(0, 1000, b * world):  # the last step is short
            g = perm[start:start + b * world]
            parts = [share(perm, views, start, b, r, world) for r in range(world)]
            real = [p for p in parts if p[2] > 0]
            # The ranks' real parts are exactly this step's global batch, each sample once...
            assert sorted(torch.cat([p[0] for p in real]).tolist()) == sorted(g.tolist())
            # ...with its own view, and weights whose mean makes the ranks' mean loss the global mean.
            view_of = {int(i): int(v) for i, v in zip(perm, views)}  # views go with permutation positions
            for idx, v, _ in parts:
                assert [view_of[int(i)] for i in idx] == v.tolist()
            # Per-sample "losses" (the ids): DDP's average of the ranks' weighted means is g's mean.
            ddp_mean = sum(w * idx.double().mean() for idx, _, w in real) / world
            assert float(ddp_mean) == pytest.approx(float(g.double().mean()))
    assert per_rank_batch(64, 3) == 22  # rounded up; the report states 22 x 3


def test_a_rank_left_without_samples_takes_the_step_on_a_stand_in_at_weight_zero():
    perm = torch.arange(10)
    idx, _, w = share(perm, None, 8, 4, 3, 4)  # the last global batch holds 2 samples, 4 ranks
    assert len(idx) == 1 and w == 0.0
    idx, _, w = share(perm, None, 8, 4, 1, 4)
    assert idx.tolist() == [9] and w == 4 * 1 / 2


def test_a_single_process_takes_the_whole_batch_at_weight_one():
    perm = torch.randperm(10)
    idx, v, w = share(perm, None, 0, 64, 0, 1)
    assert torch.equal(idx, perm) and v is None and w == 1.0


@pytest.mark.parametrize("module", ["edgedistill.distill.ddp", "edgedistill.distill.jobs"])
def test_the_collective_helpers_and_the_job_channel_import_nothing_of_the_trainer(module):
    code = f"import sys, {module}; print('edgedistill.distill.trainer' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr[-2000:]


def test_a_job_names_a_shared_module_and_sends_any_other_by_value():
    shared, other = nn.Linear(2, 2), nn.Linear(3, 1)
    jobs.share("teacher:abc", shared)
    assert jobs._pack(shared) == jobs._Shared("teacher:abc")
    sent = jobs._unpack(jobs._pack(other), lambda key: None)
    assert sent is not other and torch.equal(sent.weight, other.weight)
    assert jobs._unpack(jobs._pack(shared), lambda key: {"teacher:abc": "loaded here"}[key]) == "loaded here"
    t = torch.ones(2, requires_grad=True)
    assert not jobs._pack(t).requires_grad  # tensors travel detached, on the CPU


def test_the_launcher_reports_rank_0s_code_when_every_rank_ended_with_it():
    assert exit_code_of({0: 4, 1: 4}, first_rank=0, world=2) == 4  # a failed gate: every rank exits 4
    assert exit_code_of({0: 1, 1: 1}, first_rank=1, world=2) == 1


@pytest.mark.parametrize("codes,first,said", [
    ({1: -9, 0: -15}, 1, "rank 1 of 2 was killed by SIGKILL"),
    ({1: -9, 0: 7}, 1, "rank 1 of 2 was killed by SIGKILL"),
    ({0: -9, 1: 7}, 0, "rank 0 of 2 was killed by SIGKILL"),
    ({1: 3, 0: 130}, 1, "rank 1 of 2 exited with code 3"),
])
def test_a_rank_that_died_is_named_with_how(codes, first, said):
    with pytest.raises(RankLostError) as err:
        exit_code_of(codes, first_rank=first, world=2)
    assert said in err.value.message and err.value.exit_code == 7


def test_nproc_is_taken_out_of_the_arguments_every_process_gets():
    from edgedistill.cli import _without_nproc

    assert _without_nproc(["--nproc", "2", "--epochs", "3", "--nproc=4", "-q"]) == ["--epochs", "3", "-q"]


def test_a_non_zero_rank_says_which_rank_speaks():
    env = {"PATH": "/usr/bin:/bin", "RANK": "1"}
    proc = subprocess.run([sys.executable, "-m", "edgedistill", "build", "--target", "no-such-target"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("[rank 1] error:"), proc.stderr
