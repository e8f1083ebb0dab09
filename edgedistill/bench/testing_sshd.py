"""A throwaway OpenSSH server on 127.0.0.1, for tests and the ssh-overhead benchmark.

It is a real sshd (Debian's ``openssh-server``) with its own keys, config, pid file and
``authorized_keys`` in a temporary directory, on a free high port, plus a client config file for
``ssh -F`` so the user's own ``~/.ssh`` is never read or written:

    with LocalSshd() as server:
        bench_model(model, server.spec, ssh_config=server.client_config, python=sys.executable)

``server.spec`` is ``ssh://edgedistill-test`` (an alias in the client config); ``server.url`` is
the same server as ``ssh://user@127.0.0.1:PORT``. ``kill()`` drops the server and every live
connection at once, like a board losing power.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"
ALIAS = "edgedistill-test"
SFTP_SERVER_CANDIDATES = (
    "/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/libexec/sftp-server",
)


class SshdUnavailable(RuntimeError):
    """sshd or ssh-keygen is missing, or the server would not start: the reason says which."""


def sshd_unavailable_reason() -> str | None:
    """None when a LocalSshd can start here; otherwise why not, and how to fix it."""
    if not Path(SSHD).is_file():
        return f"{SSHD} not found: apt-get install -y openssh-server"
    for tool in ("ssh", "scp", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} not found: apt-get install -y openssh-client"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (sshd detaches connections with setsid, so no killpg)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class LocalSshd:
    def __init__(self, *, user: str | None = None) -> None:
        reason = sshd_unavailable_reason()
        if reason:
            raise SshdUnavailable(reason)
        self.user = user or getpass.getuser()
        self.dir = Path(tempfile.mkdtemp(prefix="edgedistill-sshd-"))
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.client_config = self.dir / "ssh_config"
        self.known_hosts = self.dir / "known_hosts"
        self.log = self.dir / "sshd.log"

    @property
    def spec(self) -> str:
        return f"ssh://{ALIAS}"

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def __enter__(self) -> "LocalSshd":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _keygen(self, path: Path) -> str:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgedistill-test", "-f", str(path)],
                       check=True, capture_output=True)
        return (path.with_suffix(".pub")).read_text().strip()

    def start(self) -> None:
        host_pub = self._keygen(self.dir / "host_ed25519")
        client_pub = self._keygen(self.dir / "client_ed25519")
        (self.dir / "authorized_keys").write_text(client_pub + "\n")
        os.chmod(self.dir / "authorized_keys", 0o600)
        if os.geteuid() == 0:
            # sshd's privilege-separation directory; systemd's tmpfiles makes it, containers may not.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        sftp = next((p for p in SFTP_SERVER_CANDIDATES if Path(p).exists()), None)
        last_error = ""
        for _ in range(3):  # another process may grab the free port before sshd binds it
            self.port = _free_port()
            self._write_configs(host_pub, sftp)
            self.process = subprocess.Popen(
                [SSHD, "-D", "-f", str(self.dir / "sshd_config"), "-E", str(self.log)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            if self._wait_listening(10.0):
                return
            last_error = self.log.read_text() if self.log.exists() else ""
            self._stop_process()
        raise SshdUnavailable(f"sshd did not start on 127.0.0.1: {last_error.strip()[-500:]}")

    def _write_configs(self, host_pub: str, sftp: str | None) -> None:
        d = self.dir
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {d / 'host_ed25519'}",
            f"PidFile {d / 'sshd.pid'}",
            f"AuthorizedKeysFile {d / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "StrictModes no",
            "UsePAM no",
            "PrintMotd no",
            "LogLevel VERBOSE",
            f"AllowUsers {self.user}",
        ]
        if sftp:
            lines.append(f"Subsystem sftp {sftp}")
        (d / "sshd_config").write_text("\n".join(lines) + "\n")
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {' '.join(host_pub.split()[:2])}\n")
        client = [
            f"Host {ALIAS}",
            "  HostName 127.0.0.1",
            f"  Port {self.port}",
            f"  User {self.user}",
            "",
            "Host *",
            f"  IdentityFile {d / 'client_ed25519'}",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {self.known_hosts}",
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  PasswordAuthentication no",
            "  LogLevel ERROR",
        ]
        self.client_config.write_text("\n".join(client) + "\n")

    def _wait_listening(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.settimeout(2.0)
                    if sock.recv(64).startswith(b"SSH-"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def connections(self) -> list[int]:
        """Pids of the per-connection sshd processes and whatever they run."""
        return _children(self.process.pid) if self.process else []

    def kill(self) -> None:
        """Kill the server and every live session at once (SIGKILL): a board that lost power."""
        if self.process is None:
            return
        victims = [self.process.pid, *self.connections()]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)
        self.process = None

    def _stop_process(self) -> None:
        if self.process is None:
            return
        children = self.connections()
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process = None

    def stop(self) -> None:
        self._stop_process()
        shutil.rmtree(self.dir, ignore_errors=True)
