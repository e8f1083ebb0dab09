"""ssh path end to end against a real OpenSSH server on 127.0.0.1 (throwaway keys and config).

The "board" is this machine: the helper runs under the tests' own interpreter (python=sys.executable),
so these tests prove the transport (copy, quoting, cleanup, host keys, failures), not a Pi's speed.
"""

from __future__ import annotations

import glob
import json
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest
from bench_support.models import tiny_models

from edgedistill.bench import bench_many, bench_model
from edgedistill.bench.testing_sshd import LocalSshd, SshdUnavailable, sshd_unavailable_reason
from edgedistill.errors import DeviceError

REMOTE_TMP_GLOB = "/tmp/edgedistill-bench.*"


def _start_sshd() -> LocalSshd:
    reason = sshd_unavailable_reason()
    if reason:
        pytest.skip(f"no OpenSSH server to test against: {reason}")
    try:
        return LocalSshd().__enter__()
    except SshdUnavailable as err:
        pytest.skip(f"OpenSSH server would not start: {err}")


@pytest.fixture(scope="module")
def sshd():
    server = _start_sshd()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def models():
    return tiny_models()


@pytest.fixture()
def opts(sshd):
    return {"ssh_config": str(sshd.client_config), "python": sys.executable}


@pytest.fixture()
def no_leftovers():
    """Fail the test if it leaves a temporary directory on the 'device'."""
    before = set(glob.glob(REMOTE_TMP_GLOB))
    yield
    left = set(glob.glob(REMOTE_TMP_GLOB)) - before
    assert not left, f"left behind on the device: {left}"


def test_model_path_with_space_and_quotes_reaches_the_device_intact(sshd, models, opts, tmp_path, no_leftovers):
    hostile = tmp_path / "my dir" / "student's \"v1\"; $(touch pwned) `x`.tflite"
    hostile.parent.mkdir()
    shutil.copyfile(models.tflite_dynamic, hostile)
    m = bench_model(hostile, sshd.spec, warmup=2, runs=20, **opts)
    assert m.model_file == hostile.name
    assert m.device == "ssh://edgedistill-test" and not m.is_host
    assert m.runtime == "ai_edge_litert" and m.delegate == "xnnpack" and m.runs == 20
    assert 0 < m.median_ms <= m.p90_ms
    assert m.peak_memory_mb and m.peak_memory_mb > 1  # the helper's own process, measured on the device
    assert m.device_info["kernel"] and m.device_info["os"]
    assert not list(Path("/").glob("pwned")) and not list(Path.home().glob("pwned"))


def test_user_host_port_form_and_onnx(sshd, models, opts, no_leftovers):
    m = bench_model(models.onnx_dynamic, sshd.url, threads=1, warmup=1, runs=10, **opts)
    assert m.device == sshd.url
    assert m.runtime == "onnxruntime" and m.extra["batch"] == 1


def test_ssh_and_local_time_the_same_way(sshd, models, opts):
    remote = bench_model(models.tflite_dynamic, sshd.spec, warmup=1, runs=5, **opts)
    local = bench_model(models.tflite_dynamic, "local", warmup=1, runs=5)
    same = ("runtime", "runtime_version", "threads", "delegate", "warmup", "runs")
    assert {k: getattr(remote, k) for k in same} == {k: getattr(local, k) for k in same}
    assert remote.extra["helper_version"] == local.extra["helper_version"]


def test_unknown_host_key_is_refused_unless_the_user_opts_out(sshd, models, tmp_path):
    strict = tmp_path / "ssh_config"
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    strict.write_text(sshd.client_config.read_text().replace(str(sshd.known_hosts), str(empty_known_hosts)))
    with pytest.raises(DeviceError, match="host key is not trusted.*--no-host-key-check"):
        bench_model(models.tflite_dynamic, sshd.spec, ssh_config=str(strict), python=sys.executable, runs=2)
    m = bench_model(models.tflite_dynamic, sshd.spec, ssh_config=str(strict), python=sys.executable, runs=2,
                    warmup=0, host_key_check=False)
    assert m.runs == 2
    assert empty_known_hosts.read_text() == ""  # opting out records nothing either


def test_missing_remote_python_says_how_to_fix_it(sshd, models, opts, no_leftovers):
    with pytest.raises(DeviceError, match="not found on the device.*devices.toml"):
        bench_model(models.tflite_dynamic, sshd.spec, runs=2, **{**opts, "python": "/nonexistent/python3"})


def test_refused_connection_is_retried_once_then_reported(models, opts, tmp_path):
    start = time.monotonic()
    with pytest.raises(DeviceError, match=r"cannot connect.*after 2 attempts"):
        bench_model(models.tflite_dynamic, "ssh://root@127.0.0.1:1", runs=2, backoff_s=0.1, **opts)
    assert time.monotonic() - start < 20


def test_server_killed_mid_run_fails_that_row_with_a_clear_reason(models, opts):
    server = _start_sshd()
    try:
        cfg = {**opts, "ssh_config": str(server.client_config)}
        # Millions of ~microsecond invokes: the benchmark is still running when the server dies.
        outcome: dict = {}

        def run() -> None:
            try:
                outcome["m"] = bench_model(models.tflite_dynamic, server.spec, warmup=0, runs=20_000_000,
                                           backoff_s=0.2, timeout_s=120, **cfg)
            except DeviceError as err:
                outcome["error"] = err

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _helper_running(server):
            time.sleep(0.1)
        assert _helper_running(server), "the benchmark never started on the device"
        killed_at = time.monotonic()
        server.kill()
        worker.join(timeout=60)
        assert not worker.is_alive(), "bench_model hung after the server died"
        assert time.monotonic() - killed_at < 30
        message = str(outcome["error"])
        assert "lost the connection during the benchmark" in message
        assert "after 2 attempts" in message  # the retry found nobody listening
    finally:
        server.stop()
        for leftover in glob.glob(REMOTE_TMP_GLOB):  # the dead board could not clean up
            shutil.rmtree(leftover, ignore_errors=True)


def _helper_running(server: LocalSshd) -> bool:
    """True once python itself runs the helper (not the login shell still reading its rc files:
    killing a shell mid-startup can leave its tools' lock files behind)."""
    for pid in server.connections():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[1].endswith(b"/device_bench.py"):
            return True
    return False


def test_several_devices_in_parallel_one_failing(sshd, models, opts, no_leftovers):
    rows = bench_many(models.tflite_dynamic, ["local", sshd.spec, "ssh://root@127.0.0.1:1"], warmup=1, runs=10,
                      backoff_s=0.1, **opts)
    assert [r.device for r in rows] == ["local", sshd.spec, "ssh://root@127.0.0.1:1"]
    assert rows[0].ok and rows[1].ok
    assert not rows[2].ok and "cannot connect" in rows[2].error and "Connection refused" in rows[2].error


def test_cli_over_ssh_prints_json(sshd, models, tmp_path, no_leftovers):
    import typer
    from typer.testing import CliRunner

    from edgedistill.bench.cli import bench

    app = typer.Typer()
    app.command("bench")(bench)
    app.command("noop")(lambda: None)
    done = CliRunner().invoke(app, ["bench", str(models.tflite_dynamic), "-d", sshd.spec, "--ssh-config",
                                    str(sshd.client_config), "--python", sys.executable, "--runs", "5", "--json",
                                    "--no-host-key-check", "--store", str(tmp_path / "store.jsonl")])
    assert done.exit_code == 0, done.output
    payload = json.loads(done.stdout)
    assert payload["device"] == sshd.spec and payload["runtime"] == "ai_edge_litert"
