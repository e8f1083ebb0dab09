"""One build on many processes: ``torchrun ... -m edgedistill build`` or ``build --nproc N``.

torchrun starts every process with the same command line and sets RANK and WORLD_SIZE. Rank 0 runs
the build (:mod:`edgedistill.pipeline`): it alone selects, exports, verifies, benchmarks and writes
the run directory and the bundle. Every other rank loads the same data (and the user's teacher)
for itself, makes rank 0's training calls with it (:mod:`edgedistill.distill.jobs`) and exits with
rank 0's exit code. Processes are started and supervised by torchrun, never here: ``--nproc``
calls torchrun's own launcher (:func:`launch`) and only reads back the exit codes it reports.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from pathlib import Path

from edgedistill.errors import (
    EXIT_RANK_LOST, InputError, RankLostError, RankMismatchError,
)

RESUME_HINT = ("torchrun's log names the rank that died and why; relaunch the same command to resume "
               "from the finished stages and the last epoch checkpoint")


def under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def join() -> None:
    """Join torchrun's process group (NCCL on GPUs, gloo on CPUs, and the gloo control group)."""
    from edgedistill.distill import ddp

    ddp.init_from_env()


def lead(rep) -> None:
    import torch.distributed as dist

    from edgedistill.distill import ddp, jobs

    jobs.start_leading()
    rep.note(f"torchrun: {ddp.world_size()} processes ({dist.get_backend()}); every rank trains, rank 0 alone "
             "selects, exports, verifies, benchmarks and writes")


def follow_build(cfg) -> int:
    """A non-zero rank's build: rank 0's training jobs, on this rank's own copy of the inputs."""
    from edgedistill.distill import jobs, trainer  # noqa: F401  (registers the "train" job)
    from edgedistill.progress import Reporter
    from edgedistill.quantize import qat  # noqa: F401  (registers the "qat" job)
    from edgedistill.stages.data import load_data
    from edgedistill.stages.teacher import load_user_teacher, shared_teacher_key, user_teacher_module

    def load_shared(key: str, data):
        loaded = load_user_teacher(cfg)
        if loaded is None or shared_teacher_key(loaded) != key:
            raise RankMismatchError(
                f"rank {rank()} loaded another teacher than rank 0 ({cfg.teacher or 'none'})",
                hint="every node must see the same --teacher and --weights files")
        return user_teacher_module(loaded, data)[0]

    return jobs.follow(lambda: load_data(cfg, Reporter(quiet=True)), load_shared)


@contextmanager
def peer_loss_as_error(run_dir: Path):
    """On rank 0: the error a collective raises when another rank died becomes a RankLostError
    (exit 7) that says what was kept, instead of a traceback."""
    from edgedistill.distill import ddp

    try:
        yield
    except RuntimeError as exc:
        if ddp.world_size() <= 1 or not ddp.peer_lost(exc):
            raise
        raise RankLostError(
            f"another process of this {ddp.world_size()}-process build died or lost contact "
            f"({str(exc).splitlines()[0][:200]}); nothing was written to the bundle, and the run directory "
            f"{run_dir} keeps the finished stages", hint=RESUME_HINT) from exc


def finish(exit_code: int) -> None:
    """On rank 0: send the other ranks its exit code (not after losing one: nobody is listening)."""
    import sys

    jobs = sys.modules.get("edgedistill.distill.jobs")
    if jobs is None or exit_code == EXIT_RANK_LOST:
        return
    try:
        jobs.finish(exit_code)
    except RuntimeError:
        pass  # a rank is gone; torchrun stops the others


def terminate_as_interrupt() -> None:
    """SIGTERM (``kill``, or torchrun stopping every rank when one failed) ends a build like
    Ctrl-C: temporary files are removed on the way out, finished stages are kept."""
    import threading

    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():  # signal handlers live on the main thread
        signal.signal(signal.SIGTERM, handler)


# --- edgedistill build --nproc N ------------------------------------------------------------------


def launch(nproc: int, build_args: list[str]) -> int:
    """Run ``python -m edgedistill build BUILD_ARGS`` on ``nproc`` processes of this machine with
    torchrun's launcher (its standalone rendezvous), and return the build's exit code. torchrun
    itself exits 1 for every failure; this reads rank 0's code back from its report, and a rank
    that died is a RankLostError naming it."""
    if under_torchrun() or "LOCAL_RANK" in os.environ:
        raise InputError("--nproc was given inside a torchrun job",
                         hint="drop --nproc: torchrun already started the processes")
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # torchrun would set 1 thread per process and warn; share this machine's cores instead.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // nproc)))
    args = parse_args(["--standalone", "--nproc-per-node", str(nproc), "--module", "edgedistill", "build",
                       *build_args])
    try:
        run(args)
    except ChildFailedError as exc:
        codes = {r: f.exitcode for r, f in exc.failures.items()}
        first_rank, _ = exc.get_first_failure()
        return exit_code_of(codes, first_rank, nproc)
    # Ctrl-C goes on to the CLI, which says what was kept and exits 130.
    return 0


def exit_code_of(codes: dict[int, int], first_rank: int, world: int) -> int:
    """The build's exit code from the failed ranks' codes (negative: the signal that killed it):
    rank 0's own code when every failed rank ended with it (the followers exit with rank 0's
    code), else a rank died, which raises RankLostError naming the first one."""
    lead_code = codes.get(0)
    if lead_code is not None and lead_code > 0 and all(c == lead_code for c in codes.values()):
        return lead_code
    code = codes.get(first_rank, 1)
    how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
    raise RankLostError(
        f"rank {first_rank} of {world} {how}; torchrun stopped the others. Nothing was written to the bundle",
        hint=RESUME_HINT)


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"
