"""Multi-process training: torchrun starts two CPU processes (gloo) that train one student through
DistributedDataParallel and end with identical weights."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from cli_timeouts import CLI_TIMEOUT_S

from edgedistill.distill.ddp import shard

REPO = Path(__file__).resolve().parents[1]


def test_shards_deal_the_permutation_like_distributed_sampler():
    perm = torch.randperm(11, generator=torch.Generator().manual_seed(0))
    views = torch.arange(11) % 9
    parts = [shard(perm, views, r, 3) for r in range(3)]
    assert [len(p) for p, _ in parts] == [4, 4, 4]  # padded to a multiple of the world size
    dealt = torch.cat([p for p, _ in parts])
    assert set(dealt.tolist()) == set(range(11))  # every sample is seen
    for p, v in parts:  # a sample keeps its augmented view on whichever rank it lands
        lookup = {int(i): int(j) for i, j in zip(perm, views)}
        assert [lookup[int(i)] for i in p] == v.tolist()


def test_a_single_process_shard_is_the_whole_permutation():
    perm = torch.randperm(10)
    p, v = shard(perm, None, 0, 1)
    assert torch.equal(p, perm) and v is None


def test_the_collective_helpers_import_nothing_of_the_trainer():
    code = "import sys, edgedistill.distill.ddp; print('edgedistill.distill.trainer' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr[-2000:]


def _torchrun() -> list[str]:
    exe = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    return [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]


def test_torchrun_with_two_cpu_processes_trains_and_rank_0_prints_the_accuracy(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [*_torchrun(), "--standalone", "--nproc_per_node", "2", "-m", "edgedistill.distill.ddp_demo",
           "--epochs", "3", "--checkpoint-dir", str(tmp_path / "ckpt")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("world_size 2 ") for line in lines), proc.stdout
    assert "ranks_identical True" in lines, proc.stdout
    acc = [float(line.split()[1]) for line in lines if line.startswith("test_accuracy ")]
    assert len(acc) == 1, "only rank 0 prints"
    assert 0.0 <= acc[0] <= 1.0
    assert (tmp_path / "ckpt" / "checkpoint.pt").exists()  # written by rank 0
