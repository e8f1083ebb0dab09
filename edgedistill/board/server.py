"""One emulated board per target: the cached arm64 rootfs (:mod:`edgedistill.board.rootfs`) with an
sshd inside it on a loopback port, reached by the ssh runner as if it were a Pi.

Each target's board has its own generated host and user keys, its own port and its own emulated
CPU: sessions get ``QEMU_CPU`` from the target's core (``cortex-a72`` for rpi4, ``cortex-a76`` for
rpi5 and android-arm64's big cores), since qemu's default CPU advertises SVE/SME/LSE, which no Pi
has. What ``board up`` prints is the ``devices.toml`` entry; the same entry is kept in
``<cache>/boards/devices.toml``, which the build reads to find a target's board.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgedistill.board import rootfs
from edgedistill.board.rootfs import BoardError

HELPER_PYTHON = rootfs.VENV + "/bin/python"


@dataclass
class BoardState:
    target: str
    cpu: str  # QEMU_CPU
    port: int
    pid: int
    alias: str
    ssh_config: str
    started: str

    @property
    def spec(self) -> str:
        return f"ssh://{self.alias}"


def emulated_cpu(target) -> str:
    """The qemu CPU model for a target: its (big) Cortex core, e.g. cortex-a72 for a Pi 4."""
    m = re.search(r"Cortex-(A\d+)", target.cpu or "")
    if target.abi not in ("aarch64", "arm64-v8a") or m is None:
        raise BoardError(f"target {target.name} is not an aarch64 board (cpu {target.cpu!r}, abi {target.abi})",
                         hint="an emulated board exists for aarch64 targets: rpi4, rpi5, android-arm64")
    return "cortex-" + m.group(1).lower()


def _dir(target_name: str) -> Path:
    return rootfs.board_root() / "targets" / target_name


def _state_file(target_name: str) -> Path:
    return _dir(target_name) / "state.json"


def devices_file() -> Path:
    return rootfs.board_root().parent / "devices.toml"


def state(target_name: str) -> BoardState | None:
    """The running board of this target, or None (a stale state file is cleaned up)."""
    path = _state_file(target_name)
    if not path.exists():
        return None
    try:
        st = BoardState(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        path.unlink(missing_ok=True)
        return None
    if not _alive(st.pid) or not _listening(st.port):
        path.unlink(missing_ok=True)
        _write_devices_file()
        return None
    return st


def _pid_in(path: Path) -> int | None:
    """The pid a daemon wrote to `path`, or None while the file is missing or not yet written."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    # sshd writes "<pid>\n" in one go; the newline says the number is whole.
    return int(text) if text.endswith("\n") and text.strip().isdigit() else None


def up(target, log=print, runtimes: tuple[str, ...] = rootfs.DEFAULT_RUNTIMES) -> tuple[BoardState, rootfs.Image]:
    """Start (or find running) the target's board; returns its state and the rootfs image."""
    cpu = emulated_cpu(target)
    rootfs.require_root()
    # Re-registering qemu with binfmt would, for an instant, fail another running board's next exec.
    rootfs.check_host(reregister=not any(rootfs.board_root().glob("targets/*/state.json")))
    running = state(target.name)
    if running is not None:
        return running, rootfs.Image(**json.loads((rootfs.board_root() / "image.json").read_text()))
    image = rootfs.ensure_rootfs(log, runtimes)
    root = rootfs.rootfs_dir()
    rootfs.mounted(root, keep=True).__enter__()  # kept while a board runs; board down lets go
    d = _dir(target.name)
    d.mkdir(parents=True, exist_ok=True)
    inside = root / "etc/edgedistill-board" / target.name  # what sshd reads, inside its chroot
    inside.mkdir(parents=True, exist_ok=True)
    for key, where in (("host_ed25519", inside), ("client_ed25519", d)):
        if not (where / key).exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"edgedistill-board-{target.name}",
                            "-f", str(where / key)], check=True, capture_output=True, timeout=60)
    (inside / "authorized_keys").write_text((d / "client_ed25519.pub").read_text())
    (root / "run/sshd").mkdir(parents=True, exist_ok=True)
    port = _free_port()
    rel = f"/etc/edgedistill-board/{target.name}"
    (inside / "sshd_config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {rel}/host_ed25519", f"PidFile {rel}/sshd.pid",
        f"AuthorizedKeysFile {rel}/authorized_keys", "PermitRootLogin prohibit-password",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "PrintMotd no",
        "StrictModes no", "Subsystem sftp /usr/lib/openssh/sftp-server",
        # Every session's process runs on the target's core; the runtimes' venv comes first.
        f"SetEnv QEMU_CPU={cpu} PATH={rootfs.VENV}/bin:/usr/local/bin:/usr/bin:/bin", "",
    ]))
    (inside / "sshd.pid").unlink(missing_ok=True)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "QEMU_CPU": cpu, "LC_ALL": "C"}
    subprocess.run(["chroot", str(root), "/usr/sbin/sshd", "-f", f"{rel}/sshd_config", "-E", f"{rel}/sshd.log"],
                   check=False, capture_output=True, env=env, timeout=120)
    deadline = time.monotonic() + 120  # sshd under qemu takes a few seconds to listen
    # sshd creates its pid file before it writes the number: wait for a whole one, not just the file.
    while not (_listening(port) and (pid := _pid_in(inside / "sshd.pid")) is not None):
        if time.monotonic() > deadline:
            logtext = (inside / "sshd.log").read_text()[-800:] if (inside / "sshd.log").exists() else ""
            raise BoardError(f"the board's sshd did not start on 127.0.0.1:{port}: {logtext.strip()}")
        time.sleep(0.5)
    host_pub = (inside / "host_ed25519.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    alias = f"edgedistill-board-{target.name}"
    (d / "ssh_config").write_text("\n".join([
        f"Host {alias}", "  HostName 127.0.0.1", f"  Port {port}", "  User root",
        f"  IdentityFile {d / 'client_ed25519'}", "  IdentitiesOnly yes", f"  UserKnownHostsFile {d / 'known_hosts'}",
        "  StrictHostKeyChecking yes", "  BatchMode yes", "",
    ]))
    st = BoardState(target=target.name, cpu=cpu, port=port, pid=pid, alias=alias, ssh_config=str(d / "ssh_config"),
                    started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    _state_file(target.name).write_text(json.dumps(asdict(st), indent=2))
    _write_devices_file()
    return st, image


def down(target_name: str) -> bool:
    """Stop the target's board; False when none was running. The rootfs stays cached."""
    path = _state_file(target_name)
    st = None
    if path.exists():
        try:
            st = BoardState(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            st = None
    path.unlink(missing_ok=True)
    stopped = False
    if st is not None and _alive(st.pid):
        os.kill(st.pid, signal.SIGTERM)
        for _ in range(100):
            if not _alive(st.pid):
                break
            time.sleep(0.1)
        stopped = True
    _write_devices_file()
    if not any(rootfs.board_root().glob("targets/*/state.json")):
        rootfs.unmount_all(rootfs.rootfs_dir())  # the last board let go of /proc, /sys, /dev
    return stopped


def device_entry(st: BoardState) -> str:
    return "\n".join([
        f"[devices.board-{st.target}]",
        f'spec = "{st.spec}"',
        f'ssh_config = "{st.ssh_config}"',
        f'python = "{HELPER_PYTHON}"',
        "emulated = true  # qemu-user: results are real aarch64 kernels, timings mean nothing",
        "",
    ])


def _write_devices_file() -> None:
    entries = []
    for path in sorted(rootfs.board_root().glob("targets/*/state.json")):
        try:
            entries.append(device_entry(BoardState(**json.loads(path.read_text()))))
        except (ValueError, TypeError):
            continue
    devices_file().parent.mkdir(parents=True, exist_ok=True)
    devices_file().write_text("# Written by `edgedistill board up`: the emulated boards that are up.\n\n"
                              + "\n".join(entries))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie is not a server
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
