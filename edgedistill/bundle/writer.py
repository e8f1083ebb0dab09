"""Write the release bundle: assemble it in a hidden sibling folder, then rename it into place.

An app build or CI job never sees a half-written bundle: either the previous bundle or the new one
is there, whole. A failure while assembling removes the partial folder.

A process killed while assembling (``kill -9``, a power cut) cannot remove its partial folder, so
every write first removes the stale ones beside its bundle. Ownership is checkable: the writer
holds an exclusive ``flock`` on an owner file inside its partial folder (which also names its PID
and host) for as long as it writes, and the kernel drops that lock when the process dies, however
it dies. A partial whose owner file is unlocked is stale; one that is locked belongs to a live
build (a concurrent build of the same target) and is left alone. Where the file system cannot lock,
a partial is stale when its PID is not alive on this host, or when it is older than
:data:`STALE_AFTER_S`. A partial without an owner file (a writer between creating the folder and
the file, or between removing the file and renaming the folder, or an older edgedistill) is stale
once it has not changed for :data:`UNOWNED_GRACE_S`.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

import numpy as np

from edgedistill.bundle.manifest import build_manifest, manifest_files, portable
from edgedistill.bundle.html_report import extras_from_result, render_html
from edgedistill.bundle.report import render_markdown
from edgedistill.verify.bundle import SAMPLE_IMAGES


OWNER_FILE = ".owner"  # inside a partial folder; never part of the bundle
STALE_AFTER_S = 6 * 3600.0  # an owned partial this old is stale even when its owner cannot be checked
UNOWNED_GRACE_S = 600.0  # a partial without an owner file is stale once unchanged this long


def write_bundle(result, bundle_dir: Path, versions: dict) -> Path:
    bundle_dir = Path(bundle_dir)
    bundle_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(bundle_dir)  # before claiming ours, so a lone .old can still be put back
    staging, owner = open_partial(bundle_dir)
    old = _old_dir(bundle_dir)
    try:
        for name, src in result.artifact_paths().items():
            shutil.copyfile(src, staging / name)
        (staging / "labels.txt").write_text("\n".join(result.data.class_names) + "\n")
        (staging / "config.json").write_text(json.dumps(portable(result.config.to_dict()), indent=2, sort_keys=True)
                                             + "\n")
        _write_verification_sample(result, staging / "verification_sample.npz")
        # The reports quote artifact sizes, so hash the artifacts first, then add the reports.
        manifest = build_manifest(result, versions, _bundle_files(staging))
        main = next(r for a, r in zip(result.artifacts, result.verification) if a.spec.main)
        extras = extras_from_result(result, main.predictions)
        (staging / "report.html").write_text(render_html(manifest, extras))
        (staging / "report.md").write_text(render_markdown(manifest, result.stage_seconds, result.gates,
                                                           links_html=True))
        manifest["files"] = _bundle_files(staging)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if old.exists():  # (a concurrent cleanup may be removing it too; a rest fails the rename below)
            shutil.rmtree(old, ignore_errors=True)
        if bundle_dir.exists():
            bundle_dir.rename(old)
        (staging / OWNER_FILE).unlink()  # still locked through ``owner`` until it is closed
        staging.rename(bundle_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old.exists() and not bundle_dir.exists():  # interrupted mid-swap: put the last bundle back
            old.rename(bundle_dir)
        raise
    finally:
        os.close(owner)
    shutil.rmtree(old, ignore_errors=True)
    return bundle_dir


def open_partial(bundle_dir: Path) -> tuple[Path, int]:
    """Create the hidden partial folder beside ``bundle_dir`` and claim it: an owner file inside
    naming this process, exclusively ``flock``-ed. Returns the folder and the owner file's
    descriptor; the claim lasts until the descriptor is closed or the process ends."""
    bundle_dir = Path(bundle_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{bundle_dir.name}.", suffix=".partial", dir=bundle_dir.parent))
    # mkdtemp makes the folder private (0700); a bundle is read by app builds run as other users.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    fd = os.open(staging / OWNER_FILE, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:  # a file system without locks: the PID and host below still say who
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "boot_id": _boot_id(), "started": time.time()}
        os.write(fd, (json.dumps(owner) + "\n").encode())
    except BaseException:
        os.close(fd)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging, fd


def remove_stale_partials(bundle_dir: Path, now: float | None = None) -> list[Path]:
    """Remove the partial folders of ``bundle_dir`` that no live build owns (see the module
    docstring), and a leftover ``.old`` folder of an interrupted swap: put back as the bundle when
    the bundle is missing and no build is writing, else removed. Returns what was removed."""
    bundle_dir = Path(bundle_dir)
    now = time.time() if now is None else now
    removed, live = [], []
    for partial in _partials(bundle_dir):
        if not _remove_if_stale(partial, now):
            live.append(partial)
        elif not partial.exists():  # (a stale one that cannot be removed, e.g. another user's, stays)
            removed.append(partial)
    old = _old_dir(bundle_dir)
    if old.is_dir() and not old.is_symlink():
        if bundle_dir.exists():
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old)
        elif not live:  # killed between moving the last bundle aside and renaming the new one in
            try:
                old.rename(bundle_dir)
            except OSError:  # a build renamed its bundle in meanwhile: ``old`` is litter after all
                pass
    return removed


def _old_dir(bundle_dir: Path) -> Path:
    return bundle_dir.with_name(f".{bundle_dir.name}.old")


def _partials(bundle_dir: Path) -> list[Path]:
    # mkdtemp's random part is letters, digits and "_": a dot-free middle keeps another bundle's
    # partials (``.a.b.XXXX.partial`` of a bundle named "a.b") out of bundle "a"'s.
    pattern = re.compile(rf"\.{re.escape(bundle_dir.name)}\.[A-Za-z0-9_]+\.partial")
    try:
        entries = list(bundle_dir.parent.iterdir())
    except FileNotFoundError:
        return []
    return sorted(p for p in entries if pattern.fullmatch(p.name) and p.is_dir() and not p.is_symlink())


def _remove_if_stale(partial: Path, now: float) -> bool:
    """Remove ``partial`` if no live build owns it; whether it was stale (or gone already)."""
    try:
        fd = os.open(partial / OWNER_FILE, os.O_RDONLY)
    except FileNotFoundError:
        if not partial.exists():  # its owner finished (renamed it) or another build removed it
            return True
        stale = now - _mtime(partial) > UNOWNED_GRACE_S
    except OSError:
        stale = now - _mtime(partial) > STALE_AFTER_S
    else:
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                stale = True  # no process holds the claim: its owner has ended
            except OSError as err:
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    stale = False
                else:  # no locks on this file system: judge by PID, host and age
                    stale = _owner_gone(fd) or now - _mtime(partial) > STALE_AFTER_S
            if stale:  # removed while holding the lock, so no build can claim it meanwhile
                shutil.rmtree(partial, ignore_errors=True)
        finally:
            os.close(fd)
        return stale
    if stale:
        shutil.rmtree(partial, ignore_errors=True)
    return stale


def _owner_gone(fd: int) -> bool:
    """The owner file names a process of this host (this boot) that is no longer alive."""
    try:
        owner = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return False  # half-written or foreign: left to the age rule
    if host != socket.gethostname():
        return False
    if owner.get("boot_id") and _boot_id() and owner["boot_id"] != _boot_id():
        return True  # written before this host last booted
    return not _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _mtime(path: Path) -> float:
    """When ``path`` or anything directly in it last changed."""
    try:
        times = [path.stat().st_mtime] + [p.stat().st_mtime for p in path.iterdir()]
    except OSError:
        return time.time()  # vanishing under us: treat as fresh
    return max(times)


def _bundle_files(staging: Path) -> dict[str, dict]:
    files = manifest_files(staging)
    files.pop(OWNER_FILE, None)
    return files


def _write_verification_sample(result, path: Path, n: int = SAMPLE_IMAGES) -> None:
    """A fixed slice of the test split (raw images, labels) with each artifact's top-1 predictions
    as verified, so ``edgedistill verify BUNDLE`` can re-run parity without the original data."""
    data = result.data.resized_from or result.data  # full-size images: verify resizes them as the app does
    n = min(n, len(data.test))
    arrays = {"images": data.test.images[:n], "labels": data.test.labels[:n]}
    for artifact, report in zip(result.artifacts, result.verification):
        if artifact.spec.ships:
            arrays["top1/" + artifact.name] = report.predictions[:n]
    np.savez(path, **arrays)
