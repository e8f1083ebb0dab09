"""The emulated board's disk: an arm64 Debian userland with python3, sshd and the aarch64 LiteRT
wheels, built once with debootstrap and cached (a finished rootfs and a tarball of it) under the
user's cache directory.

It runs through qemu-user and binfmt_misc (the kernel hands every aarch64 binary to
``qemu-aarch64-static``), so the board's python, sshd and LiteRT are the real aarch64 builds.
Everything here needs root (binfmt, chroot, mounts); :func:`check_host` says so first, and how
to get what is missing. Facts behind the choices (measured): ``../shared/docs/arm-board.md``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgedistill.errors import EdgeDistillError
from edgedistill.paths import cache_dir

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "openssh-server", "ca-certificates")
# One venv per runtime: tflite-runtime 2.14 needs numpy 1.x, ai-edge-litert 2.3 takes numpy 2.
# onnxruntime shares the default venv: the helper benchmarks a bundle's .onnx files with it.
VENVS = {"ai-edge-litert": "/opt/edgedistill-venv", "onnxruntime": "/opt/edgedistill-venv",
         "tflite-runtime": "/opt/edgedistill-venv-tflite-runtime"}
VENV = VENVS["ai-edge-litert"]  # the board's default python
# pip takes the newest wheel whose tags it is told: without manylinux_2_27 it quietly picks
# ai-edge-litert 1.4.0 (2.x is tagged 2_27 only); onnxruntime 1.32 is tagged 2_28; tflite-runtime
# 2.14 only 2_34 (added for it alone). Debian 12's glibc 2.36 runs them all.
PLATFORM_TAGS = ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")
RUNTIMES = {"ai-edge-litert": ("ai-edge-litert==2.3.0",), "onnxruntime": ("onnxruntime==1.32.0",),
            "tflite-runtime": ("tflite-runtime==2.14.0", "numpy<2")}
DEFAULT_RUNTIMES = ("ai-edge-litert", "onnxruntime")
TFLITE_RUNTIME_TAG = "manylinux_2_34_aarch64"
MIN_QEMU = (8, 0)  # Debian 12's qemu 7.2 crashes ai-edge-litert >= 2.2 while creating the interpreter
MOUNTS = ("proc", "sys", "dev", "dev/pts")  # without sys, XNNPACK is silently not applied


class BoardError(EdgeDistillError):
    """The emulated board cannot be made or started on this machine."""


@dataclass
class Image:
    """What a cached rootfs holds (``image.json`` beside it)."""

    suite: str
    runtimes: dict[str, str] = field(default_factory=dict)  # package -> version in the board's venv
    python: str = ""
    built_seconds: float = 0.0
    restored_from_tarball: bool = False


BOARDS_ENV = "EDGEDISTILL_BOARDS"  # where boards live, if not <cache>/boards (CI keeps them across runs)


def board_root() -> Path:
    env = os.environ.get(BOARDS_ENV)
    return (Path(env).expanduser() if env else cache_dir() / "boards") / f"debian-{SUITE}-arm64"


def rootfs_dir() -> Path:
    return board_root() / "rootfs"


def tarball() -> Path:
    return board_root() / "rootfs.tar.gz"


def _run(argv: list[str], what: str, timeout: float = 3600, env: dict | None = None, **kw) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, **kw)
    except FileNotFoundError as exc:
        raise BoardError(f"{what}: {argv[0]} is not installed", hint=INSTALL_HINT) from exc
    except subprocess.TimeoutExpired as exc:
        raise BoardError(f"{what}: timed out after {timeout:.0f} s ({' '.join(argv[:4])} ...)") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise BoardError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return proc.stdout


INSTALL_HINT = ("as root: apt-get update && apt-get install debootstrap binfmt-support, then qemu-user-static "
                "from bookworm-backports (apt-get install -t bookworm-backports qemu-user-static)")


# --- the host ------------------------------------------------------------------------------------


def qemu_version() -> tuple[int, int] | None:
    exe = shutil.which("qemu-aarch64-static")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"version (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def check_host(reregister: bool = True) -> None:
    """Root, debootstrap, a qemu-user new enough for LiteRT, and binfmt_misc with qemu-aarch64
    registered (mounted and enabled here if need be); else a BoardError saying what to do."""
    require_root()
    for tool in ("debootstrap", "chroot", "mount"):
        if shutil.which(tool) is None:
            raise BoardError(f"{tool} is not installed", hint=INSTALL_HINT)
    check_qemu(qemu_version())
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        _run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], "mounting binfmt_misc")
    if reregister or not (binfmt / "qemu-aarch64").exists():
        register_binfmt(binfmt)
    if not (binfmt / "qemu-aarch64").exists():
        raise BoardError("qemu-aarch64 is not registered with binfmt_misc after registering it",
                         hint="check /proc/sys/fs/binfmt_misc and /usr/lib/binfmt.d/qemu-aarch64.conf")


def require_root() -> None:
    if os.geteuid() != 0:
        raise BoardError("the emulated board needs root (binfmt_misc, chroot, mounts)",
                         hint="run edgedistill board as root, e.g. in a CI container or with sudo")


def check_qemu(version: tuple[int, int] | None) -> None:
    if version is None:
        raise BoardError("qemu-aarch64-static is not installed", hint=INSTALL_HINT)
    if version < MIN_QEMU:
        raise BoardError(
            f"qemu-user {version[0]}.{version[1]} crashes ai-edge-litert 2.2 and later when the interpreter is "
            f"created; {MIN_QEMU[0]}.0 or later is needed",
            hint="apt-get install -t bookworm-backports qemu-user-static (add bookworm-backports to the apt "
                 "sources first), then rerun: the binfmt entry is re-registered")


def register_binfmt(binfmt: Path) -> None:
    """Register qemu-aarch64 anew. Registration opens the interpreter once (the F flag), so after
    another qemu was installed the kernel would keep running the old binary until this."""
    conf = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")  # qemu >= 8 packaging (systemd-binfmt)
    entry = binfmt / "qemu-aarch64"
    if conf.exists():
        line = next(l for l in conf.read_text().splitlines() if l.startswith(":qemu-aarch64:"))
        if entry.exists():
            entry.write_text("-1")
        (binfmt / "register").write_text(line)
        return
    if shutil.which("update-binfmts") is None:  # Debian 12's own qemu registers through binfmt-support
        raise BoardError("no binfmt registration for qemu-aarch64 was found", hint=INSTALL_HINT)
    subprocess.run(["update-binfmts", "--disable", "qemu-aarch64"], capture_output=True, timeout=60)
    _run(["update-binfmts", "--enable", "qemu-aarch64"], "registering qemu-aarch64 with binfmt_misc", timeout=60)


def unavailable_reason() -> str | None:
    """None when a board can come up here without building anything; otherwise why not."""
    if os.geteuid() != 0:
        return "the emulated board needs root"
    v = qemu_version()
    if v is None or v < MIN_QEMU:
        return f"qemu-user >= {MIN_QEMU[0]} is not installed ({INSTALL_HINT})"
    if not (board_root() / "image.json").exists() and not tarball().exists():
        return f"no board rootfs in {board_root()}: run `edgedistill board up rpi4` once (about 7 min)"
    return None


def debian_mirror() -> str:
    """The Debian archive this machine's apt already uses (the board installs from it too)."""
    for path in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")) + [Path("/etc/apt/sources.list")]:
        try:
            text = path.read_text()
        except OSError:
            continue
        for uri in re.findall(r"^URIs:\s*(\S+)", text, re.M) + re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M):
            if re.search(r"/debian/?$", uri):
                return uri
    raise BoardError("no Debian archive in /etc/apt's sources to build the board's userland from",
                     hint="this needs a Debian host whose apt sources name a Debian archive")


# --- the rootfs ----------------------------------------------------------------------------------


def ensure_rootfs(log=print, runtimes: tuple[str, ...] = DEFAULT_RUNTIMES) -> Image:
    """The cached rootfs, restored from its tarball (seconds) or built from scratch (minutes)."""
    root, meta = rootfs_dir(), board_root() / "image.json"
    if meta.exists() and (root / VENV.lstrip("/") / "bin" / "python").exists():
        image = Image(**json.loads(meta.read_text()))
        missing = [r for r in runtimes if r not in image.runtimes]
        if not missing:
            return image
        log(f"board: adding {', '.join(missing)} to the cached rootfs")
        with mounted(root):
            image.runtimes.update(_install_runtimes(root, missing))
        _save(image, meta, log)
        return image
    started = time.perf_counter()
    if tarball().exists():
        log(f"board: restoring the rootfs from {tarball()}")
        _reset(root)
        with tarfile.open(tarball()) as tar:
            tar.extractall(root.parent, filter="fully_trusted")  # our own archive, with device nodes
        image = Image(**json.loads(meta.read_text()))
        image.restored_from_tarball = True
        image.built_seconds = time.perf_counter() - started
        return ensure_rootfs(log, runtimes) if any(r not in image.runtimes for r in runtimes) else image
    log(f"board: building an arm64 Debian {SUITE} userland in {root} (debootstrap: minutes, once)")
    partial = root.with_name("rootfs.partial")
    _reset(partial)
    mirror = debian_mirror()
    _run(["debootstrap", "--arch=arm64", "--variant=minbase", SUITE, str(partial), mirror],
         f"debootstrap arm64 {SUITE} from {mirror}")
    log(f"board: debootstrap done ({time.perf_counter() - started:.0f} s); installing {' '.join(PACKAGES)}")
    with mounted(partial):
        policy = partial / "usr/sbin/policy-rc.d"  # package scripts must not start daemons
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
        _run(["chroot", str(partial), "apt-get", "update", "-q"], "apt-get update in the board", env=env)
        _run(["chroot", str(partial), "apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
             "apt-get install in the board", env=env)
        _run(["chroot", str(partial), "apt-get", "clean"], "apt-get clean in the board", env=env)
        shutil.rmtree(partial / "var/lib/apt/lists", ignore_errors=True)
        python = _run(["chroot", str(partial), "python3", "--version"], "python3 in the board").strip()
        installed = _install_runtimes(partial, list(runtimes))
    image = Image(suite=SUITE, runtimes=installed, python=python, built_seconds=time.perf_counter() - started)
    _reset(root)
    partial.rename(root)
    _save(image, meta, log)
    return image


def _install_runtimes(root: Path, runtimes: list[str]) -> dict[str, str]:
    """aarch64 wheels fetched here (the host's pip, with the exact platform tags), installed
    offline into the board's venv by its own pip."""
    wheels = root / "tmp/edgedistill-wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    versions = {}
    for name in runtimes:
        venv = VENVS[name]
        if not (root / venv.lstrip("/") / "bin/python").exists():
            _run(["chroot", str(root), "python3", "-m", "venv", venv], f"a venv for {name} in the board")
        tags = PLATFORM_TAGS + ((TFLITE_RUNTIME_TAG,) if name == "tflite-runtime" else ())
        _run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", "3.11",
              "--implementation", "cp", *[a for t in tags for a in ("--platform", t)], "-d", str(wheels),
              *RUNTIMES[name]], f"pip download of the aarch64 {name} wheels")
        _run(["chroot", str(root), f"{venv}/bin/pip", "install", "-q", "--no-index", "--find-links",
              "/tmp/edgedistill-wheels", *RUNTIMES[name]], f"installing {name} in the board", timeout=5400)
        out = _run(["chroot", str(root), f"{venv}/bin/pip", "show", name], f"the version of {name} in the board")
        versions[name] = re.search(r"^Version:\s*(\S+)", out, re.M).group(1)
    shutil.rmtree(wheels, ignore_errors=True)
    return versions


def _save(image: Image, meta: Path, log) -> None:
    meta.write_text(json.dumps(asdict(image), indent=2))
    started = time.perf_counter()
    tmp = tarball().with_suffix(".partial")
    with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
        tar.add(rootfs_dir(), arcname="rootfs")
        tar.add(meta, arcname="image.json")
    tmp.replace(tarball())
    log(f"board: cached the rootfs as {tarball()} ({tarball().stat().st_size / 2**20:.0f} MB, "
        f"{time.perf_counter() - started:.0f} s)")


def _reset(path: Path) -> None:
    if path.exists():
        unmount_all(path)
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)


class mounted:
    """/proc, /sys, /dev and /dev/pts bound into the rootfs while inside (kept while sshd runs)."""

    def __init__(self, root: Path, keep: bool = False) -> None:
        self.root, self.keep, self.made = root, keep, []

    def __enter__(self) -> Path:
        for m in MOUNTS:
            target = self.root / m
            target.mkdir(parents=True, exist_ok=True)
            if not os.path.ismount(target):
                _run(["mount", "--bind", f"/{m}", str(target)], f"binding /{m} into the board")
                self.made.append(target)
        return self.root

    def __exit__(self, *exc) -> None:
        if not self.keep:  # only what this one mounted: a running board keeps its own
            for target in reversed(self.made):
                subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=60)


def unmount_all(root: Path) -> None:
    for m in reversed(MOUNTS):
        target = root / m
        if os.path.ismount(target):
            subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=60)
