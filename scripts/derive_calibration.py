"""Re-derive the calibrations of targets with no device here from the host's measured one.

    python scripts/derive_calibration.py            # rewrite calibration/{android-arm64,rpi4,rpi5}.json
    python scripts/derive_calibration.py --check    # only print what would change

Each derived file keeps its own cited figures (device ms per MAC, the int8/fp32 ratio, citations,
reasoning: its ``derived`` source); only the host coefficients they scale are taken afresh from
``calibration/host.json`` (:func:`edgedistill.hardware.calibrate.derive_latency_model`). Run it after
``edgedistill calibrate --target host --write-repo`` so every target's model has the same features.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgedistill.fsutil import write_json_atomic  # noqa: E402
from edgedistill.hardware.calibrate import derive_latency_model  # noqa: E402
from edgedistill.hardware.latency_model import calibration_path, load_latency_model  # noqa: E402
from edgedistill.hardware.targets import available_targets, load_target  # noqa: E402
from edgedistill.models.mobilenet import MobileNetSpec  # noqa: E402
from edgedistill.models.resnet import ResNetSpec  # noqa: E402

# Two students of the default build's size, to show what the re-derivation changes.
PROBES = [ResNetSpec(1, 10, (12, 24, 48), (1, 1, 1)), MobileNetSpec(1, 10, (16, 32, 64), (1, 1, 1), 4)]
PROBE_INPUT = (1, 8, 8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="print the changes, write nothing")
    args = ap.parse_args(argv)
    # The repository's host.json, not a user's own in the cache (find_calibration's first choice).
    host = load_latency_model("host", calibration_path("host"))
    jobs = []  # every derived file is checked before any is rewritten
    for name in available_targets():
        path = calibration_path(name)
        if name == "host" or not path.is_file():
            continue
        old = load_latency_model(name, path)
        derived = [s for s in old.sources if s.get("kind") == "derived"]
        if not derived:
            print(f"{name}: not derived (its figures are measured); left alone")
            continue
        missing = [k for k in ("device_ms_per_mac", "int8_over_fp32", "citations", "reasoning") if k not in derived[0]]
        if missing:
            print(f"{path}: its derived source lacks {', '.join(missing)}; cannot derive it again; nothing written",
                  file=sys.stderr)
            return 2
        jobs.append((name, path, old, derived[0]))
    for name, path, old, src in jobs:
        target = load_target(name)
        new = derive_latency_model(host, target, src["device_ms_per_mac"]["fp32"], src["int8_over_fp32"],
                                   src["citations"], src["reasoning"])
        changes = ", ".join(
            f"{p.describe()} {old.predict(p, PROBE_INPUT, target.precision, target.threads) * 1000:.1f} -> "
            f"{new.predict(p, PROBE_INPUT, target.precision, target.threads) * 1000:.1f} us"
            for p in PROBES)
        print(f"{name}: {changes}")
        if not args.check:
            write_json_atomic(path, {"latency_model": new.to_dict()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
