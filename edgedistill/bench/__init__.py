"""The bench stage: time an exported model on this host, a board over ssh, or a phone over adb.

    from edgedistill.bench import bench_model, bench_many, LatencyStore
    m = bench_model("student.tflite", "ssh://pi@raspberrypi", threads=4)
    LatencyStore().append(m)

Each file does one thing: ``device_bench`` is the self-contained timing helper that runs on the
device (and here, for ``local``); ``local``/``ssh``/``adb`` get it or benchmark_model run there;
``runner`` picks one and retries; ``store`` keeps every measurement for the latency model;
``cli`` is the ``edgedistill bench`` command.
"""

from edgedistill.bench.devices import DeviceSpec, parse_device, resolve_device
from edgedistill.bench.measurement import BenchRow, Measurement
from edgedistill.bench.runner import bench_many, bench_model
from edgedistill.bench.store import LatencyStore

__all__ = [
    "BenchRow",
    "DeviceSpec",
    "LatencyStore",
    "Measurement",
    "bench_many",
    "bench_model",
    "parse_device",
    "resolve_device",
]
