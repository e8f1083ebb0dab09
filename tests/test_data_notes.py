"""What loading does to the user's data (unreadable images skipped, images of other sizes resized) is
a typed record on the dataset, not a Python warning the CLI filters: the build prints it in the data
stage, and the manifest, report.md and report.html keep it."""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgedistill.bundle.html_report import render_html
from edgedistill.bundle.manifest import build_manifest
from edgedistill.bundle.report import data_notes, render_markdown
from edgedistill.data.load import load_dataset
from edgedistill.data.report import DataLoadReport
from edgedistill.errors import InputError

CORRUPT = ("train/1/a.png", "train/2/b.png")


def write_png(path: Path, size: tuple[int, int], seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8), "L").save(path)


def noisy_tree(root: Path) -> Path:
    """3 classes at 16x16 under train/ and test/, 6 images at 24x20 (H x W) among them, 2 corrupt PNGs."""
    for split, per_class in (("train", 8), ("test", 3)):
        for c in range(3):
            for i in range(per_class):
                odd = (split == "train" and c == 0 and i < 4) or (split == "test" and c == 1 and i < 2)
                write_png(root / split / str(c) / f"{i}.png", (24, 20) if odd else (16, 16),
                          zlib.crc32(f"{split}/{c}/{i}".encode()))
    (root / CORRUPT[0]).write_bytes(b"\x89PNG\r\n\x1a\n not a png")  # header unreadable
    good = (root / "train" / "2" / "0.png").read_bytes()
    (root / CORRUPT[1]).write_bytes(good[: len(good) // 2])  # header fine, pixels truncated
    return root


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    return noisy_tree(tmp_path_factory.mktemp("noisy") / "data")


def test_the_record_names_every_skipped_file_and_counts_the_resized_images(noisy):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the record replaces the warnings the CLI used to swallow
        data = load_dataset(noisy)
    report = data.load_report
    assert report.skipped == CORRUPT
    assert report.skipped_count == 2
    assert report.resized == (("24x20", 6),)
    assert report.resized_count == 6
    assert report.target_size == (16, 16) and data.image_shape == (16, 16, 1)
    assert report.lines() == [
        "2 unreadable images skipped: train/1/a.png, train/2/b.png (--strict stops on them instead)",
        "6 images resized to 16x16 (the most common size; --image-size H --image-size W chooses another): 6 from 24x20",
    ]
    assert len(data.train) + len(data.val) + len(data.test) == 3 * 8 + 3 * 3


def test_strict_still_stops_on_the_first_unreadable_image(noisy):
    with pytest.raises(InputError, match="cannot read image .*train/1/a.png"):
        load_dataset(noisy, strict=True)


def test_a_given_size_reports_every_image_it_changed(noisy):
    report = load_dataset(noisy, image_size=(24, 20)).load_report
    assert report.resized == (("16x16", 3 * 8 + 3 * 3 - 6),)  # every readable 16x16 image
    assert report.target_from == "given"
    assert "as --image-size asks" in report.lines()[1]


def test_clean_data_builtin_digits_and_npz_have_nothing_to_report(tmp_path):
    for c in range(2):
        for i in range(4):
            write_png(tmp_path / "clean" / str(c) / f"{i}.png", (8, 8), 10 * c + i)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.integers(0, 256, (12, 8, 8), dtype=np.uint8),
             y_train=np.arange(12) % 3, x_test=rng.integers(0, 256, (6, 8, 8), dtype=np.uint8),
             y_test=np.arange(6) % 3)
    for data in (load_dataset(tmp_path / "clean"), load_dataset(None), load_dataset(tmp_path / "d.npz")):
        assert not data.load_report and data.load_report.lines() == []
    resized = load_dataset(tmp_path / "d.npz", image_size=(10, 10)).load_report
    assert resized.lines() == ["18 images resized to 10x10 as --image-size asks: 18 from 8x8"]


def test_lines_name_the_first_five_paths_then_how_many_more():
    report = DataLoadReport.of(skipped=[f"c/{i}.png" for i in range(8)],
                               resized_from={(24, 20): 60, (32, 32): 3}, target_size=(16, 16))
    skipped, resized = report.lines()
    assert skipped.startswith("8 unreadable images skipped: c/0.png, c/1.png, c/2.png, c/3.png, c/4.png and 3 more")
    assert resized == "63 images resized to 16x16: 60 from 24x20, 3 from 32x32"
    assert DataLoadReport.of(skipped=["x.png"]).lines()[0].startswith("1 unreadable image skipped: x.png")


def test_the_record_survives_the_manifest_round_trip():
    report = DataLoadReport.of(skipped=list(CORRUPT), resized_from={(24, 20): 60}, target_size=(16, 16),
                               target_from="most common")
    d = report.to_dict()
    assert d == {"skipped": list(CORRUPT), "skipped_count": 2, "resized": {"24x20": 60}, "resized_count": 60,
                 "target_size": [16, 16], "target_size_from": "most common",
                 "transparent": [], "transparent_count": 0, "transparent_composited_on": None,
                 "converted": [], "converted_count": 0, "converted_to": None, "converted_forced": False}
    assert DataLoadReport.from_dict(d) == report
    assert DataLoadReport.from_dict(None) == DataLoadReport() == DataLoadReport.from_dict({})


def fake_result(data):
    """A BuildResult of typed records (nothing trained) for build_manifest to read."""
    from bench_support.build_result import fake_build_result

    return fake_build_result(data)


def test_the_manifest_keeps_the_record_and_the_reports_say_it(noisy):
    manifest = build_manifest(fake_result(load_dataset(noisy)), {}, {})
    record = manifest["data"]["load_report"]
    assert record["skipped"] == list(CORRUPT) and record["resized"] == {"24x20": 6}
    lines = data_notes(manifest)
    assert len(lines) == 2 and lines[0].startswith("2 unreadable images skipped: train/1/a.png, train/2/b.png")

    manifest.update(artifacts={"model.tflite": {"precision": "int8", "accuracy": 0.9, "agreement": 1.0,
                                                "agreement_reference": "torch", "latency": {
                                                    "median_ms": None, "p90_ms": None, "threads": 4, "warmup": 2,
                                                    "runs": 5, "measured_on": "host", "device": "local"}}})
    md = render_markdown(manifest, {})
    assert "\nData:\n- 2 unreadable images skipped: train/1/a.png, train/2/b.png" in md
    assert "- 6 images resized to 16x16" in md and ": 6 from 24x20" in md
    page = render_html(manifest, {})
    assert "<h2>Data</h2>" in page
    assert "<li>2 unreadable images skipped: train/1/a.png, train/2/b.png" in page
    assert "6 images resized to 16x16" in page


def test_reports_have_no_data_note_when_loading_changed_nothing(noisy):
    manifest = build_manifest(fake_result(load_dataset(None)), {}, {})
    assert manifest["data"]["load_report"]["skipped_count"] == 0
    assert data_notes(manifest) == []
    del manifest["data"]["load_report"]  # a manifest from before the record
    assert data_notes(manifest) == []
    manifest.update(artifacts={"model.tflite": {"precision": "int8", "accuracy": 0.9, "agreement": 1.0,
                                                "agreement_reference": "torch", "latency": {
                                                    "median_ms": None, "p90_ms": None, "threads": 4, "warmup": 2,
                                                    "runs": 5, "measured_on": "host", "device": "local"}}})
    assert "Data:" not in render_markdown(manifest, {})
    assert "<h2>Data</h2>" not in render_html(manifest, {})
