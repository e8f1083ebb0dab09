"""Every test runs with its own edgedistill cache and latency store, never the user's."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp("edgedistill-cache")
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(root))
    monkeypatch.setenv("EDGEDISTILL_LATENCY_STORE", str(root / "latency_store.jsonl"))


def pytest_report_header(config):
    """Say up front what the environment lets run: without an OpenSSH server the ssh device-runner
    tests are skipped (each with its reason in the summary), and a newcomer should know before
    reading a green run as "everything tested"."""
    from edgedistill.bench.testing_sshd import sshd_unavailable_reason

    reason = sshd_unavailable_reason()
    if reason:
        lines = [f"edgedistill: ssh device-runner tests will be SKIPPED ({reason})"]
    else:
        lines = ["edgedistill: OpenSSH server and client found; the ssh device-runner tests run against a real sshd"]
    from edgedistill.board.rootfs import unavailable_reason

    board = unavailable_reason()
    lines.append(f"edgedistill: emulated aarch64 board tests will be SKIPPED ({board})" if board else
                 "edgedistill: the emulated aarch64 board's rootfs is cached; its tests run on real aarch64 LiteRT")
    return lines
