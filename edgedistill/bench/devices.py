"""Device specs (``local``, ``ssh://[user@]host[:port]``, ``adb[:SERIAL]``) and ``devices.toml`` names.

A ``devices.toml`` names devices and their options, so a target or a command can say ``pi4``:

    [devices.pi4]
    spec = "ssh://pi@raspberrypi.local"   # or an ~/.ssh/config alias: "ssh://pi4"
    python = "python3"                     # the board's interpreter
    threads = 4                            # default threads for this device

    [devices.pixel7]
    spec = "adb:28011FDH2000B3"
    benchmark_binary = "~/android/benchmark_model_arm64"   # or a table {"arm64-v8a" = "..."}
    delegate = "gpu"

The file is found at ``--devices-file``, else ``$EDGEDISTILL_DEVICES``, else ``./devices.toml``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedistill.errors import InputError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

DEVICES_ENV = "EDGEDISTILL_DEVICES"
# Options a devices.toml entry may set for bench_model (the rest go to the device runner).
BENCH_KEYS = ("threads", "delegate", "warmup", "runs", "timeout_s")


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed device spec. ``text`` is the spec exactly as the user gave it."""

    kind: str  # "local" | "ssh" | "adb"
    text: str
    host: str | None = None  # ssh: host name or ~/.ssh/config alias
    user: str | None = None
    port: int | None = None
    serial: str | None = None  # adb

    @property
    def ssh_destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else str(self.host)


_SSH = re.compile(r"^ssh://(?:(?P<user>[^@/\s]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/@\s\[\]]+)(?::(?P<port>\d+))?/?$")
_SERIAL = re.compile(r"^[A-Za-z0-9._:\-]+$")


def parse_device(text: str) -> DeviceSpec:
    """Parse a device spec; raise InputError naming the spec and the accepted forms."""
    spec = text.strip()
    if spec == "local":
        return DeviceSpec("local", spec)
    if spec == "adb":
        return DeviceSpec("adb", spec)
    if spec.startswith("adb:"):
        serial = spec[4:]
        if not serial or not _SERIAL.match(serial):
            raise InputError(f"bad adb serial in device {text!r}", hint="use adb:SERIAL as `adb devices` lists it")
        return DeviceSpec("adb", spec, serial=serial)
    if spec.startswith("ssh://"):
        match = _SSH.match(spec)
        if not match or match["host"].startswith("-"):
            raise InputError(
                f"bad ssh device {text!r}", hint="use ssh://[user@]host[:port] or ssh://ALIAS from ~/.ssh/config"
            )
        port = int(match["port"]) if match["port"] else None
        if port is not None and not 0 < port < 65536:
            raise InputError(f"bad port {port} in device {text!r}")
        host = match["host"].strip("[]")
        return DeviceSpec("ssh", spec, host=host, user=match["user"], port=port)
    raise InputError(
        f"unknown device {text!r}",
        hint="use local, ssh://[user@]host[:port], ssh://ALIAS, adb, adb:SERIAL, or a name from devices.toml",
    )


def looks_like_spec(text: str) -> bool:
    return text in ("local", "adb") or text.startswith(("adb:", "ssh://"))


@dataclass
class NamedDevice:
    name: str
    spec: str
    options: dict[str, Any] = field(default_factory=dict)


def devices_file_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise InputError(f"devices file not found: {path}", hint="check the --devices-file path")
        return path
    env = os.environ.get(DEVICES_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise InputError(f"devices file not found: {path} (from ${DEVICES_ENV})")
        return path
    path = Path("devices.toml")
    return path if path.is_file() else None


def load_devices(path: str | os.PathLike[str]) -> dict[str, NamedDevice]:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise InputError(f"cannot read devices file {path}: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"devices file {path} is not valid TOML: {err}") from err
    table = data.get("devices", {})
    if not isinstance(table, dict):
        raise InputError(f"devices file {path}: [devices] must be a table of named devices")
    out = {}
    for name, entry in table.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("spec"), str):
            raise InputError(f"devices file {path}: device {name!r} needs a spec = \"...\" string")
        parse_device(entry["spec"])  # fail early, naming the file
        options = {k: v for k, v in entry.items() if k != "spec"}
        out[name] = NamedDevice(name, entry["spec"], options)
    return out


def resolve_device(name_or_spec: str, devices_file: str | os.PathLike[str] | None = None) -> NamedDevice:
    """A spec stands for itself; any other word is looked up in devices.toml."""
    if looks_like_spec(name_or_spec):
        parse_device(name_or_spec)
        return NamedDevice(name_or_spec, name_or_spec)
    path = devices_file_path(devices_file)
    if path is None:
        raise InputError(
            f"device {name_or_spec!r} is not a device spec and no devices.toml was found",
            hint=f"use local, ssh://..., adb[:SERIAL], or name it in ./devices.toml, ${DEVICES_ENV} or --devices-file",
        )
    devices = load_devices(path)
    if name_or_spec not in devices:
        known = ", ".join(sorted(devices)) or "none"
        raise InputError(f"device {name_or_spec!r} is not in {path} (it names: {known})")
    return devices[name_or_spec]
