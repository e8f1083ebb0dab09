"""Benchmark on a Linux board over SSH, with the user's own OpenSSH client.

We shell out to ``ssh``/``scp`` (argv lists, never a local shell) so everything in the user's
``~/.ssh/config`` applies: host aliases, IdentityFile, ProxyJump, known_hosts. Host keys are
checked unless the caller opts out. One benchmark is four short steps:

1. ``mktemp -d`` on the board,
2. ``scp`` the model and the helper (``device_bench.py``) into that directory,
3. run the helper with the board's python; it prints one JSON object,
4. ``rm -rf`` the directory (always, in ``finally``).

The remote shell sees only words we quoted with ``shlex.quote``; the model's own file name
travels inside scp's protocol, so spaces and quotes in it arrive intact.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from edgedistill.bench.devices import DeviceSpec
from edgedistill.bench.errors import TransientDeviceError
from edgedistill.errors import DeviceError

HELPER_NAME = "device_bench.py"
log = logging.getLogger(__name__)
_SAFE_REMOTE_DIR = re.compile(r"^/[A-Za-z0-9._/\-]+$")


@dataclass
class SshOptions:
    ssh_config: str | None = None  # passed as ssh -F; None: the user's ~/.ssh/config
    python: str = "python3"  # the board's interpreter; may carry arguments ("python3 -X utf8")
    connect_timeout_s: float = 10.0
    host_key_check: bool = True
    runtime: str | None = None  # force ai_edge_litert / tflite_runtime / onnxruntime on the board
    ssh_binary: str = "ssh"
    scp_binary: str = "scp"
    extra_options: list[str] = field(default_factory=list)  # more "-o Key=Value" words

    @classmethod
    def from_kwargs(cls, kw: dict) -> "SshOptions":
        known = {k: kw.pop(k) for k in list(kw) if k in cls.__dataclass_fields__}
        if "connect_timeout" in kw:
            known["connect_timeout_s"] = kw.pop("connect_timeout")
        return cls(**known)


# --- argv construction (pure) -------------------------------------------------------------------


def _common_options(opts: SshOptions) -> list[str]:
    argv = []
    if opts.ssh_config:
        argv += ["-F", str(opts.ssh_config)]
    argv += [
        "-o", "BatchMode=yes",  # never wait on a password or host-key prompt
        "-o", f"ConnectTimeout={max(1, int(round(opts.connect_timeout_s)))}",
        "-o", "ServerAliveInterval=5",  # a board that vanishes mid-run fails in ~15 s, not hours
        "-o", "ServerAliveCountMax=3",
    ]
    if not opts.host_key_check:
        argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    for option in opts.extra_options:
        argv += ["-o", option]
    return argv


def ssh_argv(spec: DeviceSpec, opts: SshOptions, remote_command: str) -> list[str]:
    """argv for ``ssh`` running ``remote_command`` (already quoted for a POSIX shell)."""
    argv = [opts.ssh_binary, "-n", *_common_options(opts)]
    if spec.port:
        argv += ["-p", str(spec.port)]
    return argv + ["--", spec.ssh_destination, remote_command]


def scp_argv(spec: DeviceSpec, opts: SshOptions, local_paths: list[Path], remote_dir: str,
             legacy: bool = False) -> list[str]:
    """argv for ``scp`` copying local files into ``remote_dir`` (a safe path we created)."""
    argv = [opts.scp_binary, "-q", *(["-O"] if legacy else []), *_common_options(opts)]
    if spec.port:
        argv += ["-P", str(spec.port)]
    host = f"[{spec.host}]" if spec.host and ":" in spec.host else spec.host
    destination = f"{spec.user}@{host}" if spec.user else host
    return argv + ["--", *[str(p) for p in local_paths], f"{destination}:{remote_dir}/"]


def helper_command(remote_dir: str, model_name: str, python: str, *, threads: int, delegate: str,
                   warmup: int, runs: int, runtime: str | None) -> str:
    """The remote shell command that runs the helper; every word is shlex-quoted."""
    words = [*shlex.split(python), f"{remote_dir}/{HELPER_NAME}", f"{remote_dir}/{model_name}",
             "--threads", str(threads), "--delegate", delegate, "--warmup", str(warmup), "--runs", str(runs)]
    if runtime:
        words += ["--runtime", runtime]
    return shlex.join(words)


MKTEMP_COMMAND = 'mktemp -d "${TMPDIR:-/tmp}/edgedistill-bench.XXXXXX"'


def cleanup_command(remote_dir: str) -> str:
    return shlex.join(["rm", "-rf", "--", remote_dir])


# --- running ------------------------------------------------------------------------------------


_TRANSIENT = (
    "connection refused", "connection timed out", "operation timed out", "timed out",
    "closed by remote host", "connection closed", "connection reset", "broken pipe",
    "not responding", "no route to host", "network is unreachable", "lost connection",
    "kex_exchange_identification", "client_loop",
)


def _ssh_failure(device: str, step: str, stderr: str) -> DeviceError:
    """Turn ssh's exit 255 and its stderr into an error a user can act on."""
    detail = " ".join(stderr.strip().splitlines()[-3:]) or "no message from ssh"
    lower = stderr.lower()
    if "host key verification failed" in lower or "remote host identification has changed" in lower:
        return DeviceError(
            f"{device}: the host key is not trusted ({detail})",
            hint="connect once with `ssh` to check and record it in known_hosts, "
                 "or pass --no-host-key-check for a throwaway board",
        )
    if "permission denied" in lower:
        return DeviceError(
            f"{device}: ssh login refused ({detail})",
            hint="set up key login (ssh-copy-id) or name the IdentityFile in ~/.ssh/config",
        )
    if "could not resolve hostname" in lower:
        return DeviceError(f"{device}: unknown host ({detail})", hint="check the name or your ~/.ssh/config alias")
    if step == "run" and any(s in lower for s in _TRANSIENT):
        return TransientDeviceError(f"{device}: lost the connection during the benchmark ({detail})")
    if any(s in lower for s in _TRANSIENT):
        return TransientDeviceError(f"{device}: cannot connect ({detail})")
    return DeviceError(f"{device}: ssh failed while trying to {step} ({detail})")


def _call(argv: list[str], timeout_s: float, device: str, step: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as err:
        raise DeviceError(
            f"{device}: no answer within {timeout_s:g} s while trying to {step}",
            hint="raise --timeout for slow boards, or check that the board is up",
        ) from err
    except FileNotFoundError as err:
        raise DeviceError(f"{device}: {argv[0]} is not installed here", hint="install an OpenSSH client") from err


def parse_helper_output(device: str, stdout: str) -> dict:
    """The helper's JSON object: the last stdout line that is one."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    raise DeviceError(f"{device}: the benchmark helper printed no result ({stdout.strip()[-300:]!r})")


def run_ssh(spec: DeviceSpec, model_path: Path, helper_path: Path, *, threads: int, delegate: str,
            warmup: int, runs: int, timeout_s: float, opts: SshOptions) -> dict:
    """One attempt: the helper's result dict, or DeviceError (TransientDeviceError: worth a retry)."""
    def command(remote_dir: str) -> str:
        return helper_command(remote_dir, model_path.name, opts.python, threads=threads, delegate=delegate,
                              warmup=warmup, runs=runs, runtime=opts.runtime)

    return run_helper(spec, [model_path, helper_path], command, timeout_s=timeout_s, opts=opts)


def run_helper(spec: DeviceSpec, files: list[Path], command, *, timeout_s: float, opts: SshOptions,
               what: str = "benchmark") -> dict:
    """Copy ``files`` to a fresh temporary directory on the board, run ``command(remote_dir)``
    there (a helper printing one JSON object), remove the directory; return the object."""
    device = spec.text
    connect_budget = opts.connect_timeout_s + 30  # connect, authenticate, then a short command
    made = _call(ssh_argv(spec, opts, MKTEMP_COMMAND), connect_budget, device, "create a temporary directory")
    if made.returncode == 255:
        raise _ssh_failure(device, "connect", made.stderr)
    remote_dir = made.stdout.strip()
    if made.returncode != 0 or not _SAFE_REMOTE_DIR.match(remote_dir):
        raise DeviceError(f"{device}: mktemp -d failed on the device ({(made.stderr or remote_dir).strip()})")

    try:
        copy_budget = connect_budget + 60 + sum(f.stat().st_size for f in files) / 1e6  # ~1 MB/s worst case
        copied = _call(scp_argv(spec, opts, files, remote_dir), copy_budget, device, "copy the model")
        if copied.returncode != 0 and "subsystem request failed" in copied.stderr.lower():
            # The board has no sftp-server: fall back to the legacy scp protocol.
            copied = _call(scp_argv(spec, opts, files, remote_dir, legacy=True), copy_budget, device, "copy the model")
        if copied.returncode != 0:
            raise _ssh_failure(device, "copy the model", copied.stderr)

        ran = _call(ssh_argv(spec, opts, command(remote_dir)), timeout_s, device, f"run the {what}")
        if ran.returncode == 255:
            raise _ssh_failure(device, "run", ran.stderr)
        if ran.returncode == 127:
            raise DeviceError(
                f"{device}: {opts.python!r} was not found on the device ({ran.stderr.strip()})",
                hint="install python3 there or set python = \"/path/to/python3\" for this device in devices.toml",
            )
        result = parse_helper_output(device, ran.stdout)
        if not result.get("ok"):
            raise DeviceError(f"{device}: {what} failed on the device: {result.get('error')}")
        return result
    finally:
        if not _call_quietly(ssh_argv(spec, opts, cleanup_command(remote_dir)), connect_budget):
            # Logged, not raised: the measurement (or the real error) matters more.
            log.warning("%s: could not remove %s on the device; remove it by hand", device, remote_dir)


def _call_quietly(argv: list[str], timeout_s: float) -> bool:
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s,
                              check=False).returncode == 0
    except (subprocess.TimeoutExpired, OSError):
        return False
