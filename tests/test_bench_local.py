"""Local runner on real tiny models, plus the pieces every runner shares: device specs,
devices.toml, the measurement record, the latency store, bench_many and the CLI command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from bench_support.models import tiny_models

from edgedistill.bench import LatencyStore, Measurement, bench_many, bench_model, parse_device, resolve_device
from edgedistill.bench import device_bench
from edgedistill.errors import DeviceError, InputError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def models():
    return tiny_models()


# --- local runner ---------------------------------------------------------------------------------


def test_local_tflite_measurement_has_every_field(models):
    m = bench_model(models.tflite_dynamic, "local", threads=1, warmup=3, runs=30)
    assert m.device == "local" and m.is_host
    assert m.model_file == "tiny_dyn.tflite" and m.model_bytes == models.tflite_dynamic.stat().st_size
    assert len(m.model_sha256) == 64
    assert (m.runtime, m.runtime_version) == ("ai_edge_litert", "2.3.0")
    assert (m.threads, m.delegate, m.warmup, m.runs) == (1, "xnnpack", 3, 30)
    assert 0 < m.median_ms <= m.p90_ms and m.mean_ms > 0 and m.std_ms >= 0
    assert m.init_ms > 0 and m.first_inference_ms > 0
    assert m.extra["batch"] == 1  # the dynamic batch dim was resized to 1
    for key in ("model", "soc", "os", "kernel", "machine"):
        assert key in m.device_info
    assert m.device_info["kernel"] == os.uname().release
    assert m.timestamp.endswith("Z")


def test_local_tflite_without_default_delegates(models):
    m = bench_model(models.tflite_dynamic, delegate="none", warmup=1, runs=10)
    assert m.delegate == "none" and m.median_ms > 0


def test_fixed_batch_two_model_runs_at_its_own_batch_and_says_so(models):
    m = bench_model(models.tflite, warmup=1, runs=10)
    assert m.extra["batch"] == 2
    assert any("fixed batch" in note for note in m.extra["notes"])


def test_local_onnx_symbolic_batch_is_fed_batch_one(models):
    m = bench_model(models.onnx_dynamic, warmup=2, runs=20)
    assert m.runtime == "onnxruntime" and m.delegate == "cpu"
    assert m.extra["batch"] == 1
    fixed = bench_model(models.onnx, warmup=1, runs=5)
    assert fixed.extra["batch"] == 2


def test_onnx_asked_for_xnnpack_records_what_really_ran(models):
    import onnxruntime as ort

    m = bench_model(models.onnx_dynamic, delegate="xnnpack", warmup=1, runs=5)
    expected = "xnnpack" if "XnnpackExecutionProvider" in ort.get_available_providers() else "cpu"
    assert m.delegate == expected


def test_random_inputs_match_dtype_and_range():
    rng = np.random.default_rng(0)
    q = device_bench.random_input([1, 8, 8, 1], np.int8, rng)
    assert q.dtype == np.int8 and q.shape == (1, 8, 8, 1) and q.min() < -64 and q.max() > 64
    u = device_bench.random_input([2, 3], np.uint8, rng)
    assert u.dtype == np.uint8
    f = device_bench.random_input([4], np.float32, rng)
    assert f.dtype == np.float32
    assert device_bench.batch_one_shape([-1, 3, "h", None, 8]) == [1, 3, 1, 1, 8]
    assert device_bench.batch_one_shape([4, 1, 8, 8]) == [1, 1, 8, 8]


def test_statistics_are_the_usual_ones():
    stats = device_bench.summarize_ns([1_000_000 * v for v in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)])
    assert stats["median_ms"] == pytest.approx(float(np.median(np.arange(1, 11))))
    assert stats["p90_ms"] == pytest.approx(float(np.percentile(np.arange(1, 11), 90)))
    assert stats["std_ms"] == pytest.approx(float(np.std(np.arange(1, 11))))


def test_helper_script_is_the_package_module_and_runs_standalone(models, tmp_path):
    import subprocess
    import sys

    script = REPO / "scripts" / "device_bench.py"
    assert script.read_bytes() == Path(device_bench.__file__).read_bytes()
    copy = tmp_path / "device_bench.py"  # as on a board: alone in a directory, no edgedistill
    copy.write_bytes(script.read_bytes())
    done = subprocess.run([sys.executable, str(copy), str(models.tflite_dynamic), "--runs", "5", "--warmup", "1"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env={"PATH": os.environ["PATH"]})
    result = json.loads(done.stdout)  # stdout is the JSON object and nothing else
    assert done.returncode == 0 and result["ok"] and result["runs"] == 5
    assert result["peak_memory_mb"] > 1
    bad = subprocess.run([sys.executable, str(copy), str(tmp_path / "nope.tflite")], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "not found" in json.loads(bad.stdout)["error"]


# --- inputs and errors ---------------------------------------------------------------------------


def test_bad_inputs_say_which_file_or_option(models, tmp_path):
    with pytest.raises(InputError, match="model file not found: .*missing.tflite"):
        bench_model(tmp_path / "missing.tflite")
    (tmp_path / "x.pt").write_bytes(b"")
    with pytest.raises(InputError, match="expected a .tflite or .onnx"):
        bench_model(tmp_path / "x.pt")
    with pytest.raises(InputError, match="unknown delegate"):
        bench_model(models.tflite_dynamic, delegate="tpu")
    with pytest.raises(InputError, match="unknown bench option"):
        bench_model(models.tflite_dynamic, pyhton="python3")
    with pytest.raises(DeviceError, match="gpu"):
        bench_model(models.tflite_dynamic, delegate="gpu", runs=1)


def test_broken_model_is_an_input_error_naming_the_file(tmp_path):
    # A file the runtime cannot load is bad input (exit 2), not a failing device (issue 14, item 7).
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer")
    with pytest.raises(InputError, match="broken.tflite"):
        bench_model(broken, runs=1)


# --- device specs and devices.toml ---------------------------------------------------------------


@pytest.mark.parametrize("text,kind,host,user,port,serial", [
    ("local", "local", None, None, None, None),
    ("ssh://raspi", "ssh", "raspi", None, None, None),
    ("ssh://pi@raspi.local", "ssh", "raspi.local", "pi", None, None),
    ("ssh://pi@10.0.0.7:2222", "ssh", "10.0.0.7", "pi", 2222, None),
    ("ssh://root@[::1]:22", "ssh", "::1", "root", 22, None),
    ("adb", "adb", None, None, None, None),
    ("adb:emulator-5554", "adb", None, None, None, "emulator-5554"),
    ("adb:192.168.1.5:5555", "adb", None, None, None, "192.168.1.5:5555"),
])
def test_device_specs(text, kind, host, user, port, serial):
    spec = parse_device(text)
    assert (spec.kind, spec.host, spec.user, spec.port, spec.serial, spec.text) == (kind, host, user, port, serial, text)


@pytest.mark.parametrize("text", ["ssh://", "ssh://-oProxyCommand=x", "ssh://a b", "adb:bad serial", "tcp://x", "pi"])
def test_bad_device_specs_are_input_errors(text):
    with pytest.raises(InputError):
        parse_device(text)


def test_devices_toml_names_devices_with_options(tmp_path, models):
    devices = tmp_path / "devices.toml"
    devices.write_text('[devices.here]\nspec = "local"\nthreads = 2\nruns = 7\n\n'
                       '[devices.pi4]\nspec = "ssh://pi@raspberrypi"\npython = "python3.11"\n')
    assert resolve_device("pi4", devices).options == {"python": "python3.11"}
    m = bench_model(models.tflite_dynamic, "here", devices_file=devices, warmup=0)
    assert (m.device, m.threads, m.runs) == ("local", 2, 7)
    assert m.first_inference_ms is None  # no warm-up run
    assert bench_model(models.tflite_dynamic, "here", devices_file=devices, runs=3, warmup=0).runs == 3  # call wins
    with pytest.raises(InputError, match="not in .*devices.toml.*here, pi4"):
        resolve_device("pi5", devices)
    bad = tmp_path / "bad.toml"
    bad.write_text('[devices.x]\nspec = "ftp://x"\n')
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("x", bad)


def test_unknown_name_without_devices_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDGEDISTILL_DEVICES", raising=False)
    with pytest.raises(InputError, match="no devices.toml"):
        resolve_device("pi4")


# --- record and store ----------------------------------------------------------------------------


def test_measurement_round_trips_through_json_and_the_store(models, tmp_path):
    m = bench_model(models.tflite_dynamic, warmup=1, runs=5)
    again = Measurement.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again == m
    store = LatencyStore(tmp_path / "deep" / "latency.jsonl")
    store.append(m)
    store.append(m)
    with open(store.path, "a") as handle:
        handle.write('{"model_file": "half-writ')  # a crash mid-append must not poison the store
    assert store.records() == [m, m]
    assert store.for_model(m.model_sha256) == [m, m]
    newer = {**m.to_dict(), "energy_mj": 1.5}  # a field from a later edgedistill lands in extra
    assert Measurement.from_dict(newer).extra["energy_mj"] == 1.5


def test_default_store_lives_in_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEDISTILL_LATENCY_STORE", raising=False)
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path))
    assert LatencyStore().path == tmp_path / "latency_store.jsonl"
    monkeypatch.setenv("EDGEDISTILL_LATENCY_STORE", str(tmp_path / "other.jsonl"))
    assert LatencyStore().path == tmp_path / "other.jsonl"


# --- several devices -----------------------------------------------------------------------------


def test_bench_many_gives_one_row_per_device_and_failures_keep_their_reason(models, tmp_path):
    rows = bench_many(models.tflite_dynamic, ["local", "adb:NOSUCHDEVICE", "local"], warmup=1, runs=5,
                      adb_binary=str(tmp_path / "no-adb-here"), retries=0)
    assert [r.device for r in rows] == ["local", "adb:NOSUCHDEVICE", "local"]
    assert rows[0].ok and rows[2].ok and not rows[1].ok
    assert "adb" in rows[1].error and "not installed" in rows[1].error


# --- the CLI command -----------------------------------------------------------------------------


@pytest.fixture()
def cli_app():
    import typer

    from edgedistill.bench.cli import bench

    app = typer.Typer()
    app.command("bench")(bench)
    app.command("other")(lambda: None)  # two commands, so "bench" is a subcommand as in the real app
    return app


def test_cli_json_and_history(models, tmp_path, cli_app):
    from typer.testing import CliRunner

    store = tmp_path / "store.jsonl"
    runner = CliRunner()
    done = runner.invoke(cli_app, ["bench", str(models.tflite_dynamic), "--device", "local", "--runs", "5",
                                   "--warmup", "1", "--json", "--store", str(store)])
    assert done.exit_code == 0, done.output
    payload = json.loads(done.stdout)
    for key in ("median_ms", "p90_ms", "runtime", "device"):
        assert key in payload
    assert len(LatencyStore(store).records()) == 1

    table = runner.invoke(cli_app, ["bench", str(models.tflite_dynamic), "-d", "local", "-d", "adb:GONE",
                                    "--runs", "5", "--warmup", "1", "--store", str(store)],
                          env={"PATH": str(tmp_path), "COLUMNS": "200"})  # no adb: that row fails
    assert table.exit_code == 6, table.output
    assert "local" in table.stdout and "adb:GONE" in table.stdout and "failed" in table.stdout

    history = runner.invoke(cli_app, ["bench", "--history", "--json", "--store", str(store)])
    assert history.exit_code == 0
    assert len(json.loads(history.stdout)) == 2
    listed = runner.invoke(cli_app, ["bench", str(models.tflite_dynamic), "--history", "--store", str(store)],
                           env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "tiny_dyn.tflite" in listed.stdout


def test_cli_single_failing_device_raises_the_device_error(models, tmp_path, cli_app):
    from typer.testing import CliRunner

    done = CliRunner().invoke(cli_app, ["bench", str(tmp_path / "none.tflite"), "--store", str(tmp_path / "s")])
    assert isinstance(done.exception, InputError)
    done = CliRunner().invoke(cli_app, ["bench", str(models.tflite_dynamic), "-d", "adb:GONE", "--no-store"],
                              env={"PATH": str(tmp_path)})
    assert isinstance(done.exception, DeviceError) and done.exception.exit_code == 6
    assert str(done.exception).startswith("adb:GONE: adb is not installed here")


def test_numpy_shape_dims_are_kept_when_feeding_batch_one():
    """LiteRT reports shapes as numpy int32: a 28x28 model must be timed on 28x28 input, not 1x1."""
    import numpy as np

    from edgedistill.bench.device_bench import batch_one_shape

    assert batch_one_shape(np.array([-1, 28, 28, 1], dtype=np.int32)) == [1, 28, 28, 1]
    assert batch_one_shape([None, "batch", 8, 8]) == [1, 1, 8, 8]
