"""Progress when stderr is not a terminal (CI logs, ``| tee``): plain lines at a steady rate."""

from __future__ import annotations

from edgedistill.progress import PlainProgress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_progress_prints_first_last_and_at_most_one_line_per_interval():
    lines: list[str] = []
    clock = Clock()
    progress = PlainProgress(lines.append, interval_s=10.0, clock=clock)
    for epoch in range(1, 41):  # 40 epochs of 1 s each
        clock.now = float(epoch)
        progress.update("distill", epoch, 40, f"loss {1 / epoch:.3f}")
    assert lines[0].split() [:3] == ["distill", "epoch", "1/40"]
    assert "epoch 40/40" in lines[-1]
    assert 4 <= len(lines) <= 6  # first, every ~10 s, last
    assert "elapsed" in lines[-1] and "ETA" in lines[1]


def test_eta_counts_the_remaining_epochs():
    lines: list[str] = []
    clock = Clock()
    progress = PlainProgress(lines.append, interval_s=0.0, clock=clock)
    progress.update("teacher", 1, 11, "")
    clock.now = 10.0
    progress.update("teacher", 2, 11, "")  # 10 s per epoch, 9 to go
    assert "ETA 1m30s" in lines[-1]


def test_a_new_label_starts_a_new_run():
    lines: list[str] = []
    clock = Clock()
    progress = PlainProgress(lines.append, interval_s=100.0, clock=clock)
    progress.update("distill", 1, 3, "")
    progress.update("scratch", 1, 3, "")
    assert [line.split()[0] for line in lines] == ["distill", "scratch"]
