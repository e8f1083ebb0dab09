"""Write the release bundle: assemble it in a hidden sibling folder, then rename it into place.

An app build or CI job never sees a half-written bundle: either the previous bundle or the new one
is there, whole. A failure while assembling removes the partial folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgedistill.bundle.manifest import build_manifest, manifest_files
from edgedistill.bundle.html_report import extras_from_result, render_html
from edgedistill.bundle.report import render_markdown


def write_bundle(result, bundle_dir: Path, versions: dict) -> Path:
    bundle_dir = Path(bundle_dir)
    bundle_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{bundle_dir.name}.", suffix=".partial", dir=bundle_dir.parent))
    # mkdtemp makes the folder private (0700); a bundle is read by app builds run as other users.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    old = bundle_dir.with_name(f".{bundle_dir.name}.old")
    try:
        for name, src in result.artifact_paths().items():
            shutil.copyfile(src, staging / name)
        (staging / "labels.txt").write_text("\n".join(result.data.class_names) + "\n")
        (staging / "config.json").write_text(json.dumps(result.config.to_dict(), indent=2, sort_keys=True) + "\n")
        _write_verification_sample(result, staging / "verification_sample.npz")
        # The reports quote artifact sizes, so hash the artifacts first, then add the reports.
        manifest = build_manifest(result, versions, manifest_files(staging))
        gates = getattr(result, "gates", [])
        extras = extras_from_result(result, staging / "model.tflite", gates)
        (staging / "report.html").write_text(render_html(manifest, extras))
        (staging / "report.md").write_text(render_markdown(manifest, result.stage_seconds, gates, links_html=True))
        manifest["files"] = manifest_files(staging)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if old.exists():
            shutil.rmtree(old)
        if bundle_dir.exists():
            bundle_dir.rename(old)
        staging.rename(bundle_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old.exists() and not bundle_dir.exists():  # interrupted mid-swap: put the last bundle back
            old.rename(bundle_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return bundle_dir


def _write_verification_sample(result, path: Path, n: int = 64) -> None:
    """A fixed slice of the test split (raw images, labels) with each artifact's top-1 predictions
    as verified, so ``edgedistill verify BUNDLE`` can re-run parity without the original data."""
    from edgedistill.verify.runtime import load_artifact, to_model_input

    data = result.data
    n = min(n, len(data.test))
    raw = data.test.images[:n]
    arrays = {"images": raw, "labels": data.test.labels[:n]}
    for name, src in result.artifact_paths().items():
        model = load_artifact(src)
        arrays["top1/" + name] = model.run(to_model_input(raw, data.preprocessing, model.input_spec)).argmax(1)
    np.savez(path, **arrays)
