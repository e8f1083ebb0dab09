"""Data no classifier can learn from, or the pipeline cannot run on, is refused in the data stage,
right after loading and before anything trains: exit 2, naming the file or folder and the problem.
What loading changes in the images it keeps (transparent pixels, channels) is said in the load
report, as resizing is.

Today's failures this guards: a one-class ImageFolder or .npz built and shipped a 1-output model;
a small flat folder or one training image per class crashed with IndexError (exit 1); 3x3 images
crashed in verify after training; float labels, label gaps and a test-only class were taken or
refused with the wrong reason; an RGBA image's alpha and a grayscale image's conversion to RGB
happened silently.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgedistill.data.load import MIN_IMAGE_SIDE, load_dataset
from edgedistill.data.report import DataLoadReport
from edgedistill.errors import InputError


from test_data_load import write_image, write_tree  # noqa: E402  (the same image trees)


def write_npz(path: Path, y_train, y_test, shape=(8, 8), **extra) -> Path:
    rng = np.random.default_rng(0)
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    np.savez(path, x_train=rng.integers(0, 256, (len(y_train), *shape), dtype=np.uint8), y_train=y_train,
             x_test=rng.integers(0, 256, (len(y_test), *shape), dtype=np.uint8), y_test=y_test, **extra)
    return path


def refused(path: Path, pattern: str, **kw) -> str:
    with pytest.raises(InputError, match=pattern) as caught:
        load_dataset(path, **kw)
    message = str(caught.value)
    assert str(path) in message, message  # names the file or folder
    return message


# --- item 6: data no classifier can learn from -----------------------------------------------------

def test_a_one_class_imagefolder_is_refused(tmp_path):
    root = write_tree(tmp_path / "cats", {"cat": 10})
    refused(root, r"has one class folder \(cat\): a classifier needs at least two classes")


def test_a_one_class_split_tree_is_refused(tmp_path):
    root = write_tree(tmp_path / "cats", {"train/cat": 6, "test/cat": 2})
    refused(root, r"one class folder \(cat\)")


def test_a_one_class_npz_is_refused(tmp_path):
    refused(write_npz(tmp_path / "one.npz", [0] * 10, [0] * 4), r"one\.npz has one class \(0\) in y_train")


def test_an_npz_whose_class_names_name_one_class_is_refused(tmp_path):
    path = write_npz(tmp_path / "one.npz", [0] * 10, [0] * 4, class_names=np.array(["cat"]))
    refused(path, r"one class \(cat\) in y_train")


def test_a_test_class_never_seen_in_training_is_refused_naming_it(tmp_path):
    path = write_npz(tmp_path / "set.npz", [0, 1] * 5, [0, 1, 2, 2], class_names=np.array(["cat", "dog", "owl"]))
    refused(path, r"y_train has no example of class 2 \(owl\), though y_test holds 2")


def test_a_test_label_beyond_the_training_labels_is_refused_as_unseen_in_training(tmp_path):
    path = write_npz(tmp_path / "set.npz", [0, 1, 2] * 4, [0, 1, 2, 9])
    refused(path, r"y_test holds label 9, outside 0..2: a class never seen in training")


def test_a_validation_class_never_seen_in_training_is_refused(tmp_path):
    path = write_npz(tmp_path / "set.npz", [0, 1] * 5, [0, 1], class_names=np.array(["a", "b", "c"]),
                     x_val=np.zeros((3, 8, 8), np.uint8), y_val=np.array([0, 1, 2]))
    refused(path, r"no example of class 2 \(c\), though y_val holds 1")


def test_a_gap_in_the_labels_is_a_class_empty_in_training(tmp_path):
    path = write_npz(tmp_path / "gap.npz", [0, 1, 3] * 4, [0, 1, 3])
    refused(path, r"y_train has no example of class 2.*renumber the labels 0..K-1 without gaps")


def test_a_huge_stray_label_is_refused_without_building_a_class_per_index(tmp_path):
    path = write_npz(tmp_path / "stray.npz", np.array([0, 1, 10**12] * 4, dtype=np.int64), [0, 1])
    message = refused(path, r"no example of class 2; class 3; class 4; class 5; class 6 and 999999999993 more")
    assert len(message) < 1000


@pytest.mark.parametrize("y_train, shown", [
    (np.array([0, 1, 1.5, 0] * 3), r"1\.5 at index 2"),
    (np.array([0, 1, np.nan, 0] * 3, dtype=np.float32), r"nan at index 2"),
    (np.array([0, 1, np.inf, 0] * 3), r"inf at index 2"),
])
def test_labels_that_are_not_whole_numbers_are_refused_naming_the_first(tmp_path, y_train, shown):
    refused(write_npz(tmp_path / "f.npz", y_train, [0, 1]), rf"y_train holds .*{shown}, not a whole-number class index")


def test_whole_number_float_labels_are_class_indices(tmp_path):
    data = load_dataset(write_npz(tmp_path / "f.npz", np.array([0.0, 1.0, 2.0] * 5, dtype=np.float32),
                                  np.array([0.0, 1.0, 2.0])))
    assert data.class_names == ("0", "1", "2")
    assert data.train.labels.dtype == np.int64


def test_negative_labels_are_refused(tmp_path):
    refused(write_npz(tmp_path / "neg.npz", [0, 1] * 5, [0, -3]), r"y_test holds label -3, a negative class index")


def test_labels_and_images_of_different_lengths_are_refused(tmp_path):
    path = tmp_path / "len.npz"
    np.savez(path, x_train=np.zeros((10, 8, 8), np.uint8), y_train=np.arange(9) % 2,
             x_test=np.zeros((2, 8, 8), np.uint8), y_test=np.array([0, 1]))
    refused(path, r"y_train has 9 labels for 10 images")


def test_carving_val_out_of_an_npz_train_that_leaves_a_class_empty_is_refused(tmp_path):
    path = write_npz(tmp_path / "set.npz", [0] * 10 + [1], [0, 1])
    refused(path, r"class\(es\) 1 \(1 image\) have no training images after splitting"
                  r".*carving val out of train needs at least 2 training images per class; or provide val/")


# --- item 7: small datasets refused with the message, not IndexError --------------------------------

@pytest.mark.parametrize("per_class", [1, 2])
def test_a_flat_folder_with_fewer_than_three_images_per_class_is_refused(tmp_path, per_class):
    root = write_tree(tmp_path / "few", {"a": per_class, "b": per_class})
    refused(root, rf"class\(es\) a \({per_class} images?\), b \({per_class} images?\) have no training images"
                  r".*at least 3 images per class")


def test_one_training_image_per_class_with_val_carved_from_it_is_refused(tmp_path):
    root = write_tree(tmp_path / "few", {"train/a": 1, "train/b": 1, "test/a": 1, "test/b": 1})
    refused(root, r"carving val out of train needs at least 2 training images per class")


def test_three_images_per_class_split_into_one_each(tmp_path):
    data = load_dataset(write_tree(tmp_path / "three", {"a": 3, "b": 3}))
    assert (len(data.train), len(data.val), len(data.test)) == (2, 2, 2)


# --- item 7: images too small for the exported model ------------------------------------------------

def test_images_smaller_than_the_minimum_are_refused_with_the_flag_to_fix_it(tmp_path):
    root = write_tree(tmp_path / "tiny", {"a": 6, "b": 6}, size=(3, 3))
    message = refused(root, r"images are 3x3, below the smallest edgedistill builds for, 5x5")
    assert f"--image-size {MIN_IMAGE_SIDE} --image-size {MIN_IMAGE_SIDE}" in message


def test_an_npz_of_small_images_is_refused(tmp_path):
    path = write_npz(tmp_path / "tiny.npz", [0, 1] * 6, [0, 1], shape=(4, 9))
    refused(path, r"images are 4x9, below")


def test_an_image_size_below_the_minimum_is_refused_before_reading(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 6, "b": 6})
    with pytest.raises(InputError, match=r"--image-size 3x3 is below .* 5x5.*--image-size 5 --image-size 5"):
        load_dataset(root, image_size=(3, 3))


def test_small_images_upscaled_to_the_minimum_are_taken(tmp_path):
    root = write_tree(tmp_path / "tiny", {"a": 6, "b": 6}, size=(3, 3))
    assert load_dataset(root, image_size=(MIN_IMAGE_SIDE, MIN_IMAGE_SIDE)).image_shape == (5, 5, 1)
    assert load_dataset(write_tree(tmp_path / "five", {"a": 6, "b": 6}, size=(5, 5))).image_shape == (5, 5, 1)


@pytest.mark.slow
@pytest.mark.parametrize("side, runs", [(MIN_IMAGE_SIDE - 1, False), (MIN_IMAGE_SIDE, True)])
def test_the_minimum_is_where_the_default_student_stops_running_on_xnnpack(tmp_path, side, runs):
    """MIN_IMAGE_SIDE is measured, not chosen: the built-in teacher's default student exported for
    side-1 px fails to prepare on LiteRT's XNNPACK delegate (its last map is 1x1); at the minimum it runs."""
    import torch

    from edgedistill.backends.tflite.convert import export_tflite_fp32
    from edgedistill.backends.tflite.runtime import TFLiteModel
    from edgedistill.models import create_model
    from edgedistill.models.resnet import ResNetSpec

    model = create_model(ResNetSpec(1, 2, (8, 16, 32), (2, 2, 2)))
    path = export_tflite_fp32(model, torch.randn(2, 1, side, side), tmp_path / "m.tflite")
    if runs:
        TFLiteModel(path)
    else:
        with pytest.raises(RuntimeError, match="XNNPack"):
            TFLiteModel(path)


# --- item 7: transparency and channel conversion are said ------------------------------------------

def _rgba(path: Path, alpha: int) -> Path:
    """Red under an alpha of ``alpha`` on the left half, opaque blue on the right."""
    pixels = np.zeros((8, 8, 4), np.uint8)
    pixels[:, :4] = (255, 0, 0, alpha)
    pixels[:, 4:] = (0, 0, 255, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGBA").save(path)
    return path


def test_transparent_pixels_are_composited_on_black_and_reported(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 5, "b": 5}, mode="RGB")
    _rgba(root / "a" / "clear.png", alpha=0)
    _rgba(root / "b" / "half.png", alpha=128)
    _rgba(root / "b" / "opaque.png", alpha=255)  # an alpha channel, nothing transparent: not a note
    data = load_dataset(root, store=None, split_seed=0)
    report = data.load_report
    assert report.transparent == ("a/clear.png", "b/half.png") and report.transparent_count == 2
    line = next(x for x in report.lines() if "transparent" in x)
    assert line.startswith("2 images with transparent pixels composited on black")
    assert "a/clear.png, b/half.png" in line
    assert report.to_dict()["transparent_composited_on"] == "black"

    from edgedistill.data.decoded import load_pixels

    clear, was = load_pixels(root / "a" / "clear.png", (8, 8), 3)
    assert was and (clear[:, :4] == 0).all() and (clear[:, 4:] == (0, 0, 255)).all()
    half, _ = load_pixels(root / "b" / "half.png", (8, 8), 3)
    assert (half[:, :4] == (128, 0, 0)).all()  # colour times alpha, not the red under it
    gray, _ = load_pixels(root / "a" / "clear.png", (8, 8), 1)
    assert (gray[:, :4] == 0).all()


def test_transparency_is_noted_from_the_decoded_cache_too(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 5, "b": 5}, mode="RGB")
    _rgba(root / "a" / "clear.png", alpha=0)
    first = load_dataset(root, store=tmp_path / "store")
    again = load_dataset(root, store=tmp_path / "store")
    assert first.load_report == again.load_report and again.load_report.transparent == ("a/clear.png",)


def test_a_palette_image_with_a_transparent_entry_is_noted(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 5, "b": 5}, mode="RGB")
    image = Image.new("P", (8, 8), 1)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.paste(0, (0, 0, 4, 8))
    image.save(root / "a" / "pal.png", transparency=0)
    data = load_dataset(root)
    assert data.load_report.transparent == ("a/pal.png",)


def test_grayscale_images_among_colour_ones_are_converted_and_reported(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 5, "b": 5}, mode="RGB")
    write_image(root / "a" / "gray1.png", mode="L")
    write_image(root / "b" / "gray2.png", mode="L")
    report = load_dataset(root).load_report
    assert report.converted == ("a/gray1.png", "b/gray2.png") and report.converted_to == "RGB"
    assert ("2 grayscale images converted to RGB (the gray value in each channel) because other images are "
            "in colour: a/gray1.png, b/gray2.png (--channels 1 makes every image grayscale instead)") in report.lines()


def test_forced_channels_report_every_image_they_convert(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 5, "b": 5}, mode="RGB")
    report = load_dataset(root, channels=1).load_report
    assert report.converted_count == 10 and report.converted_to == "grayscale" and report.converted_forced
    line = next(x for x in report.lines() if "converted" in x)
    assert line.startswith("10 colour images converted to grayscale (ITU-R 601 luma) as --channels 1 asks: a/0.png")
    assert line.endswith("and 5 more")


def test_all_grayscale_or_all_colour_data_has_no_conversion_note(tmp_path):
    for mode in ("L", "RGB"):
        root = write_tree(tmp_path / mode, {"a": 4, "b": 4}, mode=mode)
        assert not load_dataset(root).load_report


def test_the_new_notes_survive_the_manifest_round_trip():
    report = DataLoadReport.of(transparent=["a/x.png"], converted=["a/g.png"] * 3, converted_count=40,
                               converted_to="RGB")
    assert DataLoadReport.from_dict(report.to_dict()) == report
    assert report.lines()[-1].startswith("40 grayscale images converted to RGB")
    assert report.lines()[-1].count("a/g.png") == 3 and "and 37 more" in report.lines()[-1]


# --- through the real CLI: exit 2 at the data stage, nothing trained or written ----------------------

def _build(tmp_path: Path, data: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "edgedistill"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "edgedistill.cli"]
    env = {**os.environ, "EDGEDISTILL_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}
    return subprocess.run([*command, "build", "--data", str(data), "--target", "host", "--epochs", "1",
                           "--teacher-epochs", "1", "--qat-epochs", "1", "--out", str(tmp_path / "dist"),
                           "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=900)


@pytest.mark.parametrize("layout, size, words", [
    ({"cat": 10}, (8, 8), "a classifier needs at least two classes"),
    ({"a": 2, "b": 2}, (8, 8), "have no training images after splitting"),
    ({"train/a": 1, "train/b": 1, "test/a": 1, "test/b": 1}, (8, 8), "carving val out of train"),
    ({"a": 6, "b": 6}, (3, 3), "below the smallest edgedistill builds for, 5x5"),
])
def test_the_build_refuses_in_the_data_stage(tmp_path, layout, size, words):
    data = write_tree(tmp_path / "data", layout, size=size)
    proc = _build(tmp_path, data)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert words in proc.stderr and str(data) in proc.stderr
    assert not re.search(r"^\s*(teacher|select|distill) ", proc.stderr, re.M)  # no stage after the data
    # --out is probed for writability up front (an empty folder may stay); no bundle file is written.
    assert not [p for p in (tmp_path / "dist").rglob("*") if p.is_file()]
    assert not (tmp_path / "cache" / "teachers").exists()
