"""load_dataset: the user's data (an ImageFolder tree or an .npz) becomes raw uint8 splits, class
names and preprocessing; bad data is refused with a message naming the file and the fix."""

from __future__ import annotations

import importlib.util
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgedistill.data.load import load_dataset
from edgedistill.errors import InputError

ROOT = Path(__file__).resolve().parent.parent


def write_image(path: Path, size: tuple[int, int] = (8, 8), mode: str = "L", seed: int = 0) -> Path:
    """A random image of (H, W) ``size``."""
    rng = np.random.default_rng(seed)
    shape = size if mode == "L" else (*size, len(mode))  # "RGB", "RGBA"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def write_tree(root: Path, layout: dict[str, int], **kw) -> Path:
    """``layout`` maps 'split/class' (or just 'class') to how many images to write there."""
    for folder, count in layout.items():
        for i in range(count):
            write_image(root / folder / f"{i}.png", seed=zlib.crc32(f"{folder}/{i}".encode()), **kw)
    return root


def write_npz(path: Path, n_train: int = 12, n_test: int = 6, classes: int = 3, shape=(8, 8), **extra) -> Path:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "y_train": np.arange(n_train) % classes,
        "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "y_test": np.arange(n_test) % classes,
    }
    arrays.update(extra)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


# --- ImageFolder ---------------------------------------------------------------------------------

def test_a_train_test_tree_gets_val_carved_from_train(tmp_path):
    root = write_tree(tmp_path / "pets", {"train/dog": 10, "train/cat": 10, "test/dog": 3, "test/cat": 3})
    data = load_dataset(root)
    assert data.name == "pets"
    assert data.class_names == ("cat", "dog")  # sorted folder names, as torchvision orders them
    assert data.image_shape == (8, 8, 1)
    assert (len(data.train), len(data.val), len(data.test)) == (16, 4, 6)
    assert data.source["kind"] == "imagefolder"
    assert data.source["split"]["provided"] == ["train", "test"]
    assert data.source["split"]["carved"] == {"val": "share of train"}
    assert data.source["counts"] == {"train": 16, "val": 4, "test": 6}
    assert data.source["skipped"] == 0


def test_preprocessing_is_uint8_scaling_and_train_statistics_per_channel(tmp_path):
    root = write_tree(tmp_path / "d", {"train/a": 6, "train/b": 6, "test/a": 2, "test/b": 2}, mode="RGB")
    data = load_dataset(root)
    scaled = data.train.images.astype(np.float64) / 255
    assert data.preprocessing.pixel_scale == pytest.approx(1 / 255)
    np.testing.assert_allclose(data.preprocessing.mean, scaled.mean(axis=(0, 1, 2)), atol=1e-6)
    np.testing.assert_allclose(data.preprocessing.std, scaled.std(axis=(0, 1, 2)), atol=1e-6)
    inputs = data.batch("train", slice(None))
    assert inputs.shape == (len(data.train), 3, 8, 8)
    np.testing.assert_allclose(inputs.mean(axis=(0, 2, 3)), 0, atol=1e-4)


def test_given_mean_and_std_are_used_per_channel_or_broadcast(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 5, "b": 5}, mode="RGB")
    assert load_dataset(root, mean=0.5, std=0.25).preprocessing.mean == (0.5, 0.5, 0.5)
    per_channel = load_dataset(root, mean=[0.1, 0.2, 0.3], std=[1, 2, 3]).preprocessing
    assert per_channel.mean == (0.1, 0.2, 0.3) and per_channel.std == (1.0, 2.0, 3.0)
    with pytest.raises(InputError, match="mean has 2 values but the images .* have 3 channel"):
        load_dataset(root, mean=[0.1, 0.2])
    with pytest.raises(InputError, match="std must be positive"):
        load_dataset(root, std=0)


def test_one_folder_of_classes_is_split_stratified_and_deterministically(tmp_path):
    root = write_tree(tmp_path / "flat", {"a": 20, "b": 20, "c": 20})
    first = load_dataset(root, split_seed=1, val_fraction=0.2, test_fraction=0.25)
    again = load_dataset(root, split_seed=1, val_fraction=0.2, test_fraction=0.25)
    other = load_dataset(root, split_seed=2, val_fraction=0.2, test_fraction=0.25)
    assert (len(first.train), len(first.val), len(first.test)) == (33, 12, 15)
    for split in (first.train, first.val, first.test):
        assert np.bincount(split.labels).tolist() == [len(split) // 3] * 3
    assert first.fingerprint() == again.fingerprint() != other.fingerprint()
    assert first.source["layout"] == "flat"
    assert first.source["split"]["carved"] == {"val": "share of all images", "test": "share of all images"}


def test_given_train_val_test_are_used_as_they_are(tmp_path):
    counts = {"train": 5, "val": 2, "test": 3}
    root = write_tree(tmp_path / "d", {f"{split}/{c}": n for split, n in counts.items() for c in "ab"})
    data = load_dataset(root)
    assert (len(data.train), len(data.val), len(data.test)) == (10, 4, 6)
    assert data.source["split"]["carved"] == {}


def test_with_only_train_and_val_the_test_split_is_carved_from_train_never_from_val(tmp_path):
    root = write_tree(tmp_path / "d", {"train/a": 10, "train/b": 10, "val/a": 2, "val/b": 2})
    data = load_dataset(root, test_fraction=0.2)
    assert (len(data.train), len(data.val), len(data.test)) == (16, 4, 4)
    assert data.source["split"]["carved"] == {"test": "share of train"}


def test_labels_txt_sets_the_class_order(tmp_path):
    root = write_tree(tmp_path / "d", {"zebra": 4, "ant": 4, "moth": 4})
    (root / "labels.txt").write_text("zebra\nant\nmoth\n")
    data = load_dataset(root)
    assert data.class_names == ("zebra", "ant", "moth")
    assert data.source["class_names_from"] == "labels.txt"


def test_a_name_in_labels_txt_without_a_folder_is_refused(tmp_path):
    root = write_tree(tmp_path / "d", {"ant": 4, "moth": 4})
    (root / "labels.txt").write_text("ant\nmoth\nzebra\n")
    with pytest.raises(InputError, match="missing zebra.*labels.txt"):
        load_dataset(root)


def test_grayscale_and_rgb_mixed_become_rgb_unless_channels_is_forced(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 4, "b": 4})
    write_image(root / "a" / "colour.png", mode="RGB")
    assert load_dataset(root).image_shape == (8, 8, 3)
    forced = load_dataset(root, channels=1)
    assert forced.image_shape == (8, 8, 1)
    assert forced.source["channels_from"] == "forced"


def test_image_size_resizes_every_image(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 4, "b": 4}, size=(10, 12))
    data = load_dataset(root, image_size=(6, 7))
    assert data.image_shape == (6, 7, 1)
    assert data.source["resized"] == 8


def test_mixed_sizes_are_resized_to_the_most_common_and_reported(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 4, "b": 4})
    write_image(root / "b" / "big.png", size=(16, 20))
    data = load_dataset(root)
    assert data.image_shape == (8, 8, 1)
    assert data.source["image_size_from"] == "most common"
    assert data.load_report.resized == (("16x20", 1),)
    assert data.load_report.lines()[0].startswith("1 image resized to 8x8 (the most common size")


def test_an_unreadable_image_is_skipped_counted_and_reported(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 4, "b": 4})
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    truncated = write_image(root / "b" / "cut.jpg").read_bytes()
    (root / "b" / "cut.jpg").write_bytes(truncated[: len(truncated) // 2])
    (root / "a" / "notes.txt").write_text("ignored: not an image")
    data = load_dataset(root)
    assert len(data.train) + len(data.val) + len(data.test) == 8
    assert data.load_report.skipped == ("a/broken.png", "b/cut.jpg")
    assert data.source["skipped"] == 2
    assert any("broken.png" in f for f in data.source["skipped_files"])
    assert data.source["ignored_non_images"] == 1


def test_strict_makes_an_unreadable_image_fatal_naming_the_file(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 4, "b": 4})
    (root / "a" / "broken.png").write_bytes(b"garbage")
    with pytest.raises(InputError, match="cannot read image .*broken.png.*--strict"):
        load_dataset(root, strict=True)


def test_an_empty_class_folder_is_refused_naming_it(tmp_path):
    root = write_tree(tmp_path / "d", {"train/a": 4, "test/a": 2, "test/b": 2})
    (root / "train" / "b").mkdir()
    with pytest.raises(InputError, match=r"class folder .*train/b has no PNG/JPEG images"):
        load_dataset(root)


def test_a_class_whose_images_are_all_unreadable_is_refused(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 4})
    (root / "b").mkdir()
    (root / "b" / "x.png").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"d/b hold no readable images"):
        load_dataset(root)


def test_train_and_test_with_different_classes_are_refused(tmp_path):
    root = write_tree(tmp_path / "d", {"train/a": 4, "train/b": 4, "test/a": 2, "test/b": 2, "test/c": 2})
    with pytest.raises(InputError, match=r"test has 3 class folders, .*train has 2: unexpected c"):
        load_dataset(root)


def test_split_folders_beside_other_folders_are_refused(tmp_path):
    root = write_tree(tmp_path / "d", {"train/a": 4, "validation/a": 2})
    with pytest.raises(InputError, match="other folders: validation"):
        load_dataset(root)


def test_a_class_too_small_to_split_is_refused(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 6, "b": 1})
    with pytest.raises(InputError, match=r"b \(1 image\) have no training images after splitting.*at least 3 images per class"):
        load_dataset(root)


# --- .npz ----------------------------------------------------------------------------------------

def test_an_npz_of_grayscale_images_gets_a_channel_axis_and_val_from_train(tmp_path):
    data = load_dataset(write_npz(tmp_path / "set.npz", n_train=20))
    assert data.name == "set"
    assert data.image_shape == (8, 8, 1)
    assert data.class_names == ("0", "1", "2")
    assert (len(data.train) + len(data.val), len(data.test)) == (20, 6)
    assert data.source["kind"] == "npz"
    assert data.source["split"]["carved"] == {"val": "share of train"}


def test_an_npz_with_val_and_class_names_uses_them(tmp_path):
    x_val = np.zeros((3, 8, 8, 3), np.uint8)
    path = write_npz(tmp_path / "set.npz", shape=(8, 8, 3), x_val=x_val, y_val=np.array([0, 1, 2]),
                     class_names=np.array(["cat", "dog", "owl"]))
    data = load_dataset(path)
    assert data.class_names == ("cat", "dog", "owl")
    assert len(data.val) == 3 and data.image_shape == (8, 8, 3)


def test_an_npz_can_be_resized_and_converted_to_rgb(tmp_path):
    data = load_dataset(write_npz(tmp_path / "set.npz"), image_size=(16, 16), channels=3)
    assert data.image_shape == (16, 16, 3)


@pytest.mark.parametrize("extra, message", [
    ({"x_train": np.zeros((12, 64), np.uint8)}, r"x_train has shape \(12, 64\) \(ndim 2\).*\(N, H, W\)"),
    ({"x_train": np.zeros((12, 3, 8, 8), np.uint8)}, r"channels-first.*transpose\(0, 2, 3, 1\)"),
    ({"x_train": np.zeros((12, 8, 8), np.float32)}, r"float32.*must be uint8.*astype\(np.uint8\)"),
    ({"y_test": np.array([0, 1, 2, 3, 4, 9])}, r"y_test holds label 9, outside 0..2"),
    ({"y_train": np.arange(12) % 3 - 1}, r"y_train holds label -1"),
    ({"y_train": np.eye(3)[np.arange(12) % 3]}, r"argmax\(1\)"),
    ({"class_names": np.array(["a", "b"])}, r"holds label 2, outside 0..1 \(2 classes, from class_names\)"),
    ({"y_test": None}, r"lacks y_test"),
    ({"x_val": np.zeros((2, 8, 8), np.uint8)}, r"only one of x_val / y_val"),
    ({"x_test": np.zeros((6, 9, 9), np.uint8)}, r"differ in shape"),
    ({"class_names": np.array([{"a": 1}, None], dtype=object)}, r"class_names holds Python objects"),
])
def test_a_malformed_npz_is_refused_naming_the_file_and_the_fix(tmp_path, extra, message):
    path = write_npz(tmp_path / "bad.npz", **extra)
    with pytest.raises(InputError, match=message) as caught:
        load_dataset(path)
    assert "bad.npz" in str(caught.value)


def test_a_damaged_npz_is_refused_naming_it(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 nope")
    with pytest.raises(InputError, match="cannot read .*bad.npz as an .npz"):
        load_dataset(tmp_path / "bad.npz")


# --- paths ---------------------------------------------------------------------------------------

def test_a_missing_path_is_refused_naming_it(tmp_path):
    with pytest.raises(InputError, match="data path .*nowhere does not exist"):
        load_dataset(tmp_path / "nowhere")


def test_a_file_that_is_neither_folder_nor_npz_is_refused(tmp_path):
    (tmp_path / "data.csv").write_text("1,2,3\n")
    with pytest.raises(InputError, match="data.csv is neither a folder nor an .npz"):
        load_dataset(tmp_path / "data.csv")


def test_no_path_means_the_builtin_digits(tmp_path):
    data = load_dataset(None)
    assert data.source["kind"] == "builtin" and data.num_classes == 10
    resized = load_dataset(None, image_size=(28, 28), channels=3, mean=0.5, std=0.25)
    assert resized.image_shape == (28, 28, 3)
    assert resized.preprocessing.mean == (0.5, 0.5, 0.5)


# --- the synthetic ImageFolder maker -------------------------------------------------------------

def test_make_imagefolder_writes_a_learnable_train_test_tree(tmp_path):
    spec = importlib.util.spec_from_file_location("make_imagefolder", ROOT / "scripts" / "make_imagefolder.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    assert maker.make_imagefolder(tmp_path / "digits", n=500, size=20, seed=0) == {"train": 400, "test": 100}
    data = load_dataset(tmp_path / "digits")
    assert data.class_names == tuple(str(i) for i in range(10))
    assert data.image_shape == (20, 20, 1)
    # Learnable: even 1-nearest-neighbour on raw pixels is far above chance (10%), without any
    # test image made from a digit a train image came from.
    train = data.batch("train", slice(None)).reshape(len(data.train), -1)
    test = data.batch("test", slice(None)).reshape(len(data.test), -1)
    distances = (test**2).sum(1)[:, None] - 2 * test @ train.T + (train**2).sum(1)[None]
    predicted = data.train.labels[distances.argmin(1)]
    assert (predicted == data.test.labels).mean() > 0.3
