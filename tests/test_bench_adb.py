"""adb path: benchmark_model's log parsed across versions, adb argv built without a device,
and one real run when `adb devices` lists a phone (skipped otherwise).

The log samples below reproduce the line formats benchmark_model printed over the years
(tensorflow/lite/tools/benchmark): no prefix (TF 2.x before ~2.9), ``INFO: `` prefixes with the
memory line renamed to a delta plus optional periodic monitoring, p5/median/p95 on newer stats
lines, and Android logcat prefixes.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path

import pytest

from edgedistill.bench.adb import (
    adb_push_argv,
    adb_shell_argv,
    benchmark_model_words,
    device_info_from_props,
    parse_adb_devices,
    parse_getprop,
    pick_binary,
    result_from_benchmark_model,
    run_words,
)
from edgedistill.bench.benchmark_model_output import BenchmarkModelOutputError, parse_benchmark_model_output
from edgedistill.errors import InputError

# --- benchmark_model output, one sample per format ----------------------------------------------

# Older (peak RSS line "Peak memory footprint (MB): init=... overall=..."), no log prefix, GPU run
# with op profiling whose own "count=" lines come after the timings line.
OLD_GPU_WITH_PROFILING = """\
STARTING!
Min num runs: [50]
Num threads: [1]
Graph: [/data/local/tmp/mnv3_seg_float.tflite]
Use gpu : [1]
Loaded model /data/local/tmp/mnv3_seg_float.tflite
Applied GPU delegate, and the model graph will be completely executed w/ the delegate.
The input model file size (MB): 3.79893
Initialized session in 1451.51ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=56 first=11147 curr=8146 min=7055 max=12036 avg=8779.68 std=1115

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=110 first=8325 curr=10016 min=7863 max=10688 avg=8680.33 std=591

Inference timings in us: Init: 1451507, First inference: 11147, Warmup (avg): 8779.68, Inference (avg): 8680.33
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=63.4883 overall=63.4883
Profiling Info for Benchmark Initialization:
Timings (microseconds): count=1 curr=1450776
Memory (bytes): count=0
Operator-wise Profiling Info for Regular Benchmark Runs:
Timings (microseconds): count=110 first=8317 curr=10006 min=7854 max=10679 avg=8671.49 std=590
Memory (bytes): count=0
"""

# Older again, a slow model: the averages in C++ %g style, a single warm-up run ("count=1 curr=N").
OLD_SCIENTIFIC = """\
Loaded model /data/local/tmp/deeplab.tflite
Initialized session in 17.187ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=1 curr=3512391

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 std=109798

Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=4.21094 overall=46.0859
"""

# Newer: INFO: prefixes, p5/median/p95 on stats lines, the memory line is a delta, no peak monitor.
NEW_DELTA_WITH_MEDIAN = """\
INFO: Min num runs: [50]
INFO: Num threads: [4]
INFO: Min warmup runs: [5]
INFO: Graph: [mobilenet_v2_224.tflite]
INFO: Loaded model mobilenet_v2_224.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: The input model file size (MB): 13.9193
INFO: Initialized session in 6.395ms.
INFO: Running benchmark for at least 5 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=153 first=2761 curr=2885 min=2605 max=18080 avg=3243.58 std=2165 p5=2630 median=2761 p95=5331

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=337 first=2881 curr=2703 min=2605 max=20356 avg=2942.27 std=1190 p5=2647 median=2781 p95=3169

INFO: Inference timings in us: Init: 6395, First inference: 2761, Warmup (avg): 3243.58, Inference (avg): 2942.27
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=39.4531 overall=40.8281
"""

# Newer with --report_peak_memory_footprint=true: the delta line and the monitored peak.
NEW_WITH_PEAK_MONITOR = """\
INFO: Log parameter values verbosely: [0]
INFO: Graph: [model.tflite]
INFO: Report the peak memory footprint: [1]
INFO: Loaded model model.tflite
INFO: The input model file size (MB): 0.007588
INFO: Initialized session in 3.337ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=9 first=81913 curr=55502 min=55502 max=81913 avg=58984.7 std=8115

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=1061 first=56576 curr=56299 min=54669 max=60236 avg=56265.8 std=982

INFO: Inference timings in us: Init: 3337, First inference: 81913, Warmup (avg): 58984.7, Inference (avg): 56265.8
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=2.43359 overall=8.67578
INFO: Overall peak memory footprint (MB) via periodic monitoring: 13.1797
INFO: Memory status at the end of exeution:
INFO: - VmRSS              : 13 MB
INFO: + RssAnnon           : 7 MB
INFO: + RssFile + RssShmem : 6 MB
"""

# As logcat shows it on Android (the tool logging through __android_log_print).
LOGCAT = """\
07-08 15:34:24.101 I/tflite  ( 5395): Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
07-08 15:34:24.101 I/tflite  ( 5395): count=1 curr=2732148
07-08 15:34:26.201 I/tflite  ( 5395): Running benchmark for at least 10 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
07-08 15:34:26.201 I/tflite  ( 5395): count=10 first=2653894 curr=2709263 min=2640862 max=3025403 avg=2.71985e+06 std=105101 p5=2640862 median=2709263 p95=3025403
07-08 15:34:26.202 I/tflite  ( 5395): Inference timings in us: Init: 458883, First inference: 2732148, Warmup (avg): 2.73215e+06, Inference (avg): 2.71985e+06
07-08 15:34:26.202 I/tflite  ( 5395): Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
07-08 15:34:26.202 I/tflite  ( 5395): Memory footprint delta from the start of the tool (MB): init=286.73 overall=337
"""

FAILED_OLD_BINARY = """\
INFO: Loaded model /data/local/tmp/edgedistill-1/student.tflite
ERROR: Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'. An older version of this builtin might be supported. Are you using an old TFLite binary with a newer model?
ERROR: Registration failed.
Failed to construct interpreter
Benchmarking failed.
"""


def test_older_format_reads_timings_and_peak_rss_and_ignores_profiler_counts():
    r = parse_benchmark_model_output(OLD_GPU_WITH_PROFILING)
    assert (r.init_us, r.first_inference_us, r.warmup_avg_us, r.inference_avg_us) == (1451507, 11147, 8779.68, 8680.33)
    assert (r.count, r.min_us, r.max_us, r.std_us) == (110, 7863, 10688, 591)
    assert r.warmup_count == 56
    assert r.median_us is None
    assert (r.init_peak_rss_mb, r.peak_rss_mb) == (63.4883, 63.4883)
    assert r.peak_memory_mb == 63.4883
    assert r.memory_delta_mb is None


def test_scientific_notation_averages_and_single_warmup_run():
    r = parse_benchmark_model_output(OLD_SCIENTIFIC)
    assert r.inference_avg_us == pytest.approx(2.95034e6)
    assert r.warmup_avg_us == pytest.approx(3.51239e6)
    assert r.warmup_count == 1 and r.count == 50
    assert r.peak_memory_mb == pytest.approx(46.0859)


def test_newer_delta_memory_line_is_not_taken_for_a_peak():
    r = parse_benchmark_model_output(NEW_DELTA_WITH_MEDIAN)
    assert r.inference_avg_us == 2942.27
    assert (r.median_us, r.p5_us, r.p95_us, r.count) == (2781, 2647, 3169, 337)
    assert (r.init_memory_delta_mb, r.memory_delta_mb) == (39.4531, 40.8281)
    assert r.peak_memory_mb is None


def test_newer_periodic_peak_monitoring_is_the_peak():
    r = parse_benchmark_model_output(NEW_WITH_PEAK_MONITOR)
    assert r.peak_monitored_mb == 13.1797
    assert r.peak_memory_mb == 13.1797
    assert r.memory_delta_mb == 8.67578
    assert (r.count, r.std_us, r.warmup_count) == (1061, 982, 9)


def test_logcat_prefixed_lines():
    r = parse_benchmark_model_output(LOGCAT)
    assert r.init_us == 458883
    assert r.inference_avg_us == pytest.approx(2.71985e6)
    assert r.median_us == 2709263 and r.count == 10
    assert r.memory_delta_mb == 337


def test_failed_run_raises_with_the_tools_own_error_lines():
    with pytest.raises(BenchmarkModelOutputError, match="FULLY_CONNECTED.*|Benchmarking failed"):
        parse_benchmark_model_output(FAILED_OLD_BINARY)
    with pytest.raises(BenchmarkModelOutputError, match="no output"):
        parse_benchmark_model_output("")


def test_measurement_fields_from_benchmark_model_summary():
    info = {"model": "Google Pixel 7", "abi": "arm64-v8a"}
    with_median = result_from_benchmark_model(parse_benchmark_model_output(NEW_DELTA_WITH_MEDIAN), info, threads=4,
                                              delegate="xnnpack", warmup=5, runs=50, binary_sha256="ab" * 32)
    assert with_median["median_ms"] == pytest.approx(2.781)
    assert with_median["mean_ms"] == pytest.approx(2.94227)
    assert with_median["p90_ms"] == pytest.approx(2.94227 + 1.2816 * 1.190)
    assert with_median["runs"] == 337 and with_median["warmup"] == 153  # what actually ran
    assert with_median["p90_estimated"] and not with_median["median_estimated"]
    assert with_median["init_ms"] == pytest.approx(6.395)
    assert with_median["runtime"] == "benchmark_model" and with_median["runtime_version"].startswith("sha256:")

    no_median = result_from_benchmark_model(parse_benchmark_model_output(OLD_GPU_WITH_PROFILING), info, threads=1,
                                            delegate="gpu", warmup=1, runs=50, binary_sha256="cd" * 32)
    assert no_median["median_ms"] == pytest.approx(8.68033) and no_median["median_estimated"]
    assert no_median["p90_ms"] <= 10.688  # never above the slowest run
    assert no_median["peak_memory_mb"] == pytest.approx(63.4883)


# --- adb argv, built without a device ------------------------------------------------------------


def test_benchmark_model_words_per_delegate():
    words = benchmark_model_words("/d/bm", "/d/m.tflite", threads=4, delegate="gpu", warmup=10, runs=100, max_secs=290)
    assert words[:2] == ["/d/bm", "--graph=/d/m.tflite"]
    for flag in ("--num_threads=4", "--warmup_runs=10", "--num_runs=100", "--min_secs=0", "--warmup_min_secs=0",
                 "--max_secs=290", "--report_peak_memory_footprint=true", "--use_gpu=true"):
        assert flag in words
    assert "--use_nnapi=true" in benchmark_model_words("b", "m", threads=1, delegate="nnapi", warmup=1, runs=1,
                                                        max_secs=1)
    assert "--use_xnnpack=false" in benchmark_model_words("b", "m", threads=1, delegate="none", warmup=1, runs=1,
                                                           max_secs=1)
    assert "--use_xnnpack=true" in benchmark_model_words("b", "m", threads=1, delegate="xnnpack", warmup=1, runs=1,
                                                          max_secs=1)
    with pytest.raises(InputError, match="delegate 'cpu'"):
        benchmark_model_words("b", "m", threads=1, delegate="cpu", warmup=1, runs=1, max_secs=1)


def test_adb_shell_quotes_hostile_model_names_into_one_command_line():
    name = "my model's \"best\"; rm -rf $HOME `x`.tflite"
    words = run_words("/data/local/tmp/edgedistill-ab12", "benchmark_model", name, threads=2, delegate="xnnpack",
                      warmup=1, runs=5, max_secs=60)
    argv = adb_shell_argv("SERIAL123", words)
    assert argv[:4] == ["adb", "-s", "SERIAL123", "shell"]
    assert len(argv) == 5  # one string: adb would join several with bare spaces
    assert shlex.split(argv[4]) == words  # the device's sh gets back exactly our words
    assert f"--graph=/data/local/tmp/edgedistill-ab12/{name}" in shlex.split(argv[4])


def test_adb_push_and_default_device_argv(tmp_path):
    local = tmp_path / "a b's.tflite"
    assert adb_push_argv(None, local, "/data/local/tmp/x/a b's.tflite") == [
        "adb", "push", str(local), "/data/local/tmp/x/a b's.tflite"]
    assert adb_shell_argv(None, ["getprop"]) == ["adb", "shell", "getprop"]


def test_device_identity_from_getprop():
    props = parse_getprop(
        "[ro.product.manufacturer]: [Google]\n[ro.product.model]: [Pixel 7]\n[ro.soc.model]: [GS201]\n"
        "[ro.build.version.release]: [14]\n[ro.build.version.sdk]: [34]\n[ro.product.cpu.abi]: [arm64-v8a]\n"
        "[ro.empty]: []\n"
    )
    assert props["ro.empty"] == ""
    info = device_info_from_props(props, "5.10.157-android13-4")
    assert info["model"] == "Google Pixel 7"
    assert info["soc"] == "GS201"
    assert info["os"] == "Android 14 (SDK 34)"
    assert info["kernel"] == "5.10.157-android13-4"
    assert info["abi"] == "arm64-v8a"


def test_adb_devices_listing_keeps_ready_devices_only():
    text = "List of devices attached\n1A2B3C\tdevice\nemulator-5554\toffline\nZX1\tunauthorized\n\n"
    assert parse_adb_devices(text) == ["1A2B3C"]


def test_benchmark_binary_is_chosen_by_abi_and_missing_ones_say_what_to_do(tmp_path):
    arm64 = tmp_path / "benchmark_model_arm64"
    arm64.write_bytes(b"\x7fELF")
    assert pick_binary(str(arm64), "arm64-v8a", "adb") == arm64
    assert pick_binary({"arm64-v8a": str(arm64)}, "arm64-v8a", "adb") == arm64
    with pytest.raises(InputError, match="armeabi-v7a"):
        pick_binary({"arm64-v8a": str(arm64)}, "armeabi-v7a", "adb")
    with pytest.raises(InputError, match="--benchmark-binary"):
        pick_binary(None, "arm64-v8a", "adb")


# --- a real phone, only when one is attached -----------------------------------------------------


def _attached_device() -> str | None:
    if shutil.which("adb") is None:
        return None
    from edgedistill.bench.adb import list_adb_devices

    devices = list_adb_devices()
    return devices[0] if devices else None


def test_adb_end_to_end_on_an_attached_device():
    serial = _attached_device()
    if serial is None:
        pytest.skip("no Android device: `adb devices` lists none (or adb is not installed)")
    binary = os.environ.get("EDGEDISTILL_BENCHMARK_MODEL")
    if not binary or not Path(binary).is_file():
        pytest.skip("set EDGEDISTILL_BENCHMARK_MODEL to a benchmark_model binary for the device's ABI")
    from bench_support.models import tiny_models

    from edgedistill.bench import bench_model

    m = bench_model(tiny_models().tflite_dynamic, f"adb:{serial}", benchmark_binary=binary, warmup=2, runs=10)
    assert m.runtime == "benchmark_model" and m.median_ms > 0
    assert m.device_info["abi"]


# --- the runner's whole flow against a fake adb (a real /bin/sh behind it) ----------------------


def test_adb_runner_pushes_runs_parses_and_cleans_up(tmp_path, monkeypatch):
    from edgedistill.bench import bench_model

    root = tmp_path / "phone"
    (root / "data/local/tmp").mkdir(parents=True)
    monkeypatch.setenv("FAKE_ADB_ROOT", str(root))
    (root / "sample.txt").write_text(NEW_WITH_PEAK_MONITOR)
    binary = tmp_path / "benchmark_model"
    binary.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@" > "$FAKE_ADB_ROOT/args.txt"\n'
        'for a; do case "$a" in --graph=*) test -f "${a#--graph=}" || { echo "ERROR: no model" >&2; exit 3; };; '
        "esac; done\ncat \"$FAKE_ADB_ROOT/sample.txt\"\n"
    )
    model = tmp_path / "my model's \"v2\".tflite"
    model.write_bytes(b"TFL3 not really a model")
    fake_adb = Path(__file__).parent / "bench_support" / "fake_adb.py"

    m = bench_model(model, "adb:FAKE123", threads=2, delegate="nnapi", warmup=3, runs=20,
                    benchmark_binary=str(binary), adb_binary=str(fake_adb))

    assert m.device == "adb:FAKE123" and not m.is_host
    assert m.device_info["model"] == "Google Pixel Fake" and m.device_info["os"] == "Android 14 (SDK 34)"
    assert m.runtime == "benchmark_model" and m.delegate == "nnapi" and m.threads == 2
    assert m.mean_ms == pytest.approx(56.2658) and m.peak_memory_mb == pytest.approx(13.1797)
    assert m.model_file == model.name
    args = (root / "args.txt").read_text().splitlines()
    assert any(a.endswith(f"/{model.name}") and a.startswith("--graph=") for a in args)  # the name arrived intact
    assert "--use_nnapi=true" in args and "--num_threads=2" in args
    assert list((root / "data/local/tmp").iterdir()) == []  # nothing left on the phone
    calls = [json.loads(line) for line in (root / "calls.jsonl").read_text().splitlines()]
    assert all(call[:2] == ["-s", "FAKE123"] for call in calls)
    assert calls[-1][2] == "shell" and calls[-1][3].startswith("rm -rf ")


def test_adb_runner_reports_a_failing_benchmark_model_and_still_cleans_up(tmp_path, monkeypatch):
    from edgedistill.bench import bench_model
    from edgedistill.errors import DeviceError

    root = tmp_path / "phone"
    (root / "data/local/tmp").mkdir(parents=True)
    monkeypatch.setenv("FAKE_ADB_ROOT", str(root))
    binary = tmp_path / "benchmark_model"
    binary.write_text("#!/bin/sh\nprintf '%s\\n' " + shlex.quote(FAILED_OLD_BINARY) + "\nexit 1\n")
    model = tmp_path / "student.tflite"
    model.write_bytes(b"TFL3")
    fake_adb = Path(__file__).parent / "bench_support" / "fake_adb.py"
    with pytest.raises(DeviceError, match="adb:FAKE123: benchmark_model printed no inference timings.*FULLY_CONNECTED"):
        bench_model(model, "adb:FAKE123", benchmark_binary=str(binary), adb_binary=str(fake_adb), runs=5)
    assert list((root / "data/local/tmp").iterdir()) == []
