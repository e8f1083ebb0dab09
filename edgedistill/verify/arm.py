"""Verification on ARM: the shipped int8 ``.tflite`` on an aarch64 board's LiteRT kernels (XNNPACK
and the builtin ones) against this host's x86 run, on the bundle's verification sample.

Phones and Pis run the aarch64 builds of LiteRT and XNNPACK, whose kernels are not the x86 ones the
build verifies with. The board is any ssh device: a real Pi, or the emulated one of
``edgedistill board up`` (qemu-user; the kernels are the real aarch64 builds). Both sides run the
same helper (:mod:`edgedistill.bench.device_bench`) on the same integer inputs at batch 1, so any
difference is the kernels'. A difference above :data:`TOLERANCE_STEPS` output quantization steps, or
XNNPACK asked for and not applied, fails the build like any other verification failure.
"""

from __future__ import annotations

import base64
import io
import shlex
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgedistill.errors import DeviceError, VerificationError

# Measured on the default rpi4 bundle (shared/docs/arm-board.md): XNNPACK bit-identical, builtin
# kernels within 1 step on real inputs and 2 on random ones. More than 2 is a kernel disagreement.
TOLERANCE_STEPS = 2
KERNELS = (("xnnpack", "XNNPACK"), ("none", "builtin kernels"))


@dataclass
class KernelParity:
    kernels: str  # "XNNPACK" | "builtin kernels"
    max_steps: float  # the largest |aarch64 - x86| output difference, in quantization steps
    identical: bool
    top1_agreement: float
    delegate_applied: bool | None  # what the board's runtime said it applied


@dataclass
class ArmParity:
    device: str
    cpu: str  # the board's core, e.g. "emulated Cortex-A72"
    emulated: bool
    runtime: str
    machine: str
    cpu_features: str | None
    samples: int
    tolerance_steps: int = TOLERANCE_STEPS
    kernels: list[KernelParity] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(k.max_steps <= self.tolerance_steps for k in self.kernels)

    def describe(self) -> str:
        """E.g. "aarch64 (emulated Cortex-A72): XNNPACK bit-identical; builtin kernels within 1
        step(s); top-1 agreement 100.0%"."""
        parts = [f"{k.kernels} bit-identical" if k.identical else f"{k.kernels} within {k.max_steps:g} step(s)"
                 for k in self.kernels]
        agree = min((k.top1_agreement for k in self.kernels), default=1.0)
        return f"{self.machine} ({self.cpu}): {'; '.join(parts)}; top-1 agreement {100 * agree:.1f}%"

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed, "summary": self.describe()}


def check_on_board(model: Path, inputs: np.ndarray, device: str, *, devices_file: str | None = None,
                   cpu: str | None = None, tolerance_steps: int = TOLERANCE_STEPS) -> ArmParity:
    """Run ``model`` on ``inputs`` (the model's input dtype, NHWC) on the board and here, per kernel set."""
    from edgedistill.bench import device_bench
    from edgedistill.bench.devices import parse_device, resolve_device
    from edgedistill.bench.runner import HELPER_PATH
    from edgedistill.bench.ssh import SshOptions, run_helper
    from edgedistill.streams import quiet_native_stderr

    started = time.perf_counter()
    named = resolve_device(device, devices_file)
    spec = parse_device(named.spec)
    if spec.kind != "ssh":
        raise DeviceError(f"ARM verification runs on an ssh board; {device} is {spec.kind}",
                          hint="name an ssh device (devices.toml), or `edgedistill board up TARGET`")
    opts = SshOptions.from_kwargs({k: v for k, v in named.options.items() if k in SshOptions.__dataclass_fields__})
    emulated = bool(named.options.get("emulated", False))
    parity = None
    with tempfile.TemporaryDirectory(prefix="edgedistill-arm-") as tmp:
        sample = Path(tmp) / "inputs.npy"
        np.save(sample, np.ascontiguousarray(inputs))
        for delegate, label in KERNELS:
            with quiet_native_stderr():
                here = _outputs(device_bench.predict(str(model), str(sample), delegate))

            def command(remote_dir: str, delegate=delegate) -> str:
                return shlex.join([*shlex.split(opts.python), f"{remote_dir}/{HELPER_PATH.name}",
                                   f"{remote_dir}/{model.name}", "--predict", f"{remote_dir}/{sample.name}",
                                   "--delegate", delegate])

            result = run_helper(spec, [model, sample, HELPER_PATH], command, timeout_s=900, opts=opts,
                                what="ARM verification")
            there = _outputs(result)
            if parity is None:
                info = _board_info(spec, opts)
                parity = ArmParity(device=device, cpu=cpu or info.get("cpu") or "unknown CPU", emulated=emulated,
                                   runtime=f"{result.get('runtime')} {result.get('runtime_version')}",
                                   machine=info.get("machine") or "aarch64", cpu_features=info.get("cpu_features"),
                                   samples=len(inputs), tolerance_steps=tolerance_steps)
            steps = float(np.abs(there.astype(np.int64) - here.astype(np.int64)).max()) if there.dtype.kind in "iu" \
                else float(np.abs(there.astype(np.float64) - here.astype(np.float64)).max())
            parity.kernels.append(KernelParity(
                kernels=label, max_steps=steps, identical=bool(np.array_equal(there, here)),
                top1_agreement=float((there.argmax(1) == here.argmax(1)).mean()),
                delegate_applied=result.get("delegate_applied")))
    parity.seconds = time.perf_counter() - started
    return parity


def require_passed(parity: ArmParity) -> None:
    if not parity.passed:
        worst = max(parity.kernels, key=lambda k: k.max_steps)
        raise VerificationError(
            f"on ARM ({parity.device}, {parity.cpu}) the shipped model's {worst.kernels} differ from x86 by "
            f"{worst.max_steps:g} quantization steps (tolerance {parity.tolerance_steps}); top-1 agreement "
            f"{100 * worst.top1_agreement:.1f}%: {parity.describe()}",
            hint="the device would compute other results than the verified ones: check the board's runtime "
                 "version against this host's, or accept the difference with --arm-tolerance-steps")


def _outputs(result: dict) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(result["outputs_npy_b64"])))


def _board_info(spec, opts) -> dict:
    """machine and CPU features of the board, from one short command (no helper needed)."""
    from edgedistill.bench.ssh import _call, ssh_argv

    ran = _call(ssh_argv(spec, opts, "uname -m; grep -m1 -i '^features' /proc/cpuinfo || true"), 120, spec.text,
                "read the board's CPU")
    lines = ran.stdout.strip().splitlines()
    features = lines[1].split(":", 1)[1].strip() if len(lines) > 1 and ":" in lines[1] else None
    return {"machine": lines[0].strip() if lines else None, "cpu_features": features}
