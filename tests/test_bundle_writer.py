"""The bundle writer cleans up after a build killed mid-write: stale hidden partial folders (and a
leftover .old of the swap) beside the bundle are removed by the next write; a partial that a live
build is writing is left alone."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgedistill.bundle import writer
from edgedistill.bundle.writer import OWNER_FILE, open_partial, remove_stale_partials, write_bundle

ROOT = Path(__file__).resolve().parent.parent


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def fake_partial(out: Path, tag: str, owner: dict | None, age_s: float = 0.0) -> Path:
    """A partial folder as a writer leaves it, with an (unlocked) owner file naming ``owner``."""
    partial = out / f".android-arm64.{tag}.partial"
    partial.mkdir(parents=True)
    (partial / "model.onnx").write_bytes(b"\x08\x07half a model")
    if owner is not None:
        (partial / OWNER_FILE).write_text(json.dumps(owner))
    if age_s:
        then = time.time() - age_s
        for p in (*partial.iterdir(), partial):
            os.utime(p, (then, then))
    return partial


def partials(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.endswith(".partial"))


def test_a_dead_owners_partial_is_removed_and_a_live_builds_is_kept(tmp_path):
    bundle = tmp_path / "android-arm64"
    stale = fake_partial(tmp_path, "dead01", {"pid": dead_pid(), "host": os.uname().nodename})
    live, fd = open_partial(bundle)  # a concurrent build, still writing
    try:
        assert json.loads((live / OWNER_FILE).read_text())["pid"] == os.getpid()
        removed = remove_stale_partials(bundle)
        assert removed == [stale]
        assert not stale.exists() and live.is_dir()
    finally:
        os.close(fd)
    # its owner is gone now (the descriptor held the claim), so the next write may remove it
    assert remove_stale_partials(bundle) == [live] and partials(tmp_path) == []


def test_without_file_locks_the_pid_host_and_age_decide(tmp_path, monkeypatch):
    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "no locks available")

    monkeypatch.setattr(writer.fcntl, "flock", no_locks)
    host = writer.socket.gethostname()
    dead = fake_partial(tmp_path, "dead01", {"pid": dead_pid(), "host": host})
    mine = fake_partial(tmp_path, "mine01", {"pid": os.getpid(), "host": host})
    elsewhere = fake_partial(tmp_path, "else01", {"pid": dead_pid(), "host": "another-host"})
    ancient = fake_partial(tmp_path, "old001", {"pid": os.getpid(), "host": "another-host"},
                           age_s=writer.STALE_AFTER_S + 60)
    assert set(remove_stale_partials(tmp_path / "android-arm64")) == {dead, ancient}
    assert mine.is_dir() and elsewhere.is_dir()


def test_a_partial_without_an_owner_file_is_removed_only_once_it_is_old(tmp_path):
    fresh = fake_partial(tmp_path, "fresh1", None)
    old = fake_partial(tmp_path, "aged01", None, age_s=writer.UNOWNED_GRACE_S + 60)
    assert remove_stale_partials(tmp_path / "android-arm64") == [old]
    assert fresh.is_dir()


def test_only_this_bundles_partials_are_considered(tmp_path):
    dead = {"pid": dead_pid(), "host": writer.socket.gethostname()}
    other = tmp_path / ".android-arm64-v2.abc123.partial"
    nested = tmp_path / ".android.arm64.abc123.partial"  # a bundle named "android.arm64", not "android"
    for p in (other, nested):
        p.mkdir()
        (p / OWNER_FILE).write_text(json.dumps(dead))
    assert remove_stale_partials(tmp_path / "android-arm64") == []
    assert remove_stale_partials(tmp_path / "android") == []
    assert other.is_dir() and nested.is_dir()


def test_a_leftover_old_is_removed_or_put_back_when_the_bundle_is_missing(tmp_path):
    bundle, old = tmp_path / "android-arm64", tmp_path / ".android-arm64.old"
    bundle.mkdir()
    old.mkdir()
    (old / "model.tflite").write_text("previous")
    assert remove_stale_partials(bundle) == [old] and not old.exists()

    bundle.rename(old)  # killed between moving the last bundle aside and renaming the new one in
    remove_stale_partials(bundle)
    assert bundle.is_dir() and not old.exists()


KILLED_MID_WRITE = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from edgedistill.bundle.writer import open_partial

    staging, _ = open_partial(Path(sys.argv[1]))
    with open(staging / "model.onnx", "wb") as f:
        f.write(b"\\x08\\x07" * 1000)  # half-copied
        f.flush()
        os.kill(os.getpid(), 9)
    """
)


def fake_result(tmp_path: Path):
    model = tmp_path / "artifacts" / "model.tflite"
    model.parent.mkdir(exist_ok=True)
    model.write_bytes(b"TFL3 new model")
    from edgedistill.backends.tflite import MODEL

    return SimpleNamespace(artifact_paths=lambda: {"model.tflite": model}, artifacts=[MODEL.at(model)],
                           verification=[SimpleNamespace(predictions=None)],
                           data=SimpleNamespace(class_names=("a", "b")),
                           config=SimpleNamespace(to_dict=lambda: {}), stage_seconds={}, gates=[])


def test_a_write_killed_midway_is_cleaned_up_by_the_next_write(tmp_path, monkeypatch):
    out = tmp_path / "out"
    bundle = out / "android-arm64"
    bundle.mkdir(parents=True)
    (bundle / "model.tflite").write_text("previous bundle")
    proc = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(bundle)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    (left,) = partials(out)
    assert (out / left / "model.onnx").stat().st_size == 2000
    assert (bundle / "model.tflite").read_text() == "previous bundle"  # untouched by the kill

    # the next write, failing or not, removes the stale partial; here it fails before its own swap
    failing = fake_result(tmp_path)
    failing.artifact_paths = lambda: (_ for _ in ()).throw(RuntimeError("export vanished"))
    with pytest.raises(RuntimeError, match="export vanished"):
        write_bundle(failing, bundle, {})
    assert partials(out) == [] and (bundle / "model.tflite").read_text() == "previous bundle"

    # a successful write: no partial, no .old, no owner file in the bundle or its manifest
    fake_partial(out, "dead02", {"pid": dead_pid(), "host": writer.socket.gethostname()})
    monkeypatch.setattr(writer, "_write_verification_sample", lambda result, path: path.write_bytes(b"npz"))
    monkeypatch.setattr(writer, "build_manifest", lambda result, versions, files: {"files": files})
    monkeypatch.setattr(writer, "extras_from_result", lambda *a: {})
    monkeypatch.setattr(writer, "render_html", lambda m, e: "<html></html>")
    monkeypatch.setattr(writer, "render_markdown", lambda *a, **k: "# report")
    write_bundle(fake_result(tmp_path), bundle, {})
    assert sorted(p.name for p in out.iterdir()) == ["android-arm64"]
    assert (bundle / "model.tflite").read_bytes() == b"TFL3 new model"
    assert not (bundle / OWNER_FILE).exists()
    assert OWNER_FILE not in json.loads((bundle / "manifest.json").read_text())["files"]
