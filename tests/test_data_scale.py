"""The data path that scales: raw rows on disk read by offset (DiskRows), the on-disk cache of decoded
ImageFolder images (decoded by DataLoader workers, reused while the files are unchanged), and the
batched, prefetched reads the stages make instead of whole-split float copies."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from edgedistill.data import decoded
from edgedistill.data.load import load_dataset
from edgedistill.data.rows import DiskRows, RowWriter
from edgedistill.distill.batches import prefetched
from edgedistill.errors import InputError
from tests.test_data_load import write_image, write_tree


def _stored(tmp_path, array: np.ndarray) -> DiskRows:
    writer = RowWriter(tmp_path / "a.u8", len(array) + 3, array.shape[1:], array.dtype)
    writer.write(0, array[:4])
    writer.write(4, array[4:])
    return writer.publish(len(array))  # the three spare rows are cut off


def test_disk_rows_index_like_the_array_they_hold(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (17, 5, 4, 3), dtype=np.uint8)
    rows = _stored(tmp_path, array)
    assert rows.shape == array.shape and len(rows) == 17 and rows.dtype == array.dtype
    assert (tmp_path / "a.u8").stat().st_size == array.nbytes
    np.testing.assert_array_equal(rows[:], array)
    np.testing.assert_array_equal(rows[3], array[3])
    np.testing.assert_array_equal(rows[-1], array[-1])
    np.testing.assert_array_equal(rows[2:11:3], array[2:11:3])
    index = np.array([16, 0, 5, 6, 7, 0, 2])  # unsorted, repeated, with a run
    np.testing.assert_array_equal(rows[index], array[index])
    view = rows.subset(np.array([9, 1, 4]))
    np.testing.assert_array_equal(view[:], array[[9, 1, 4]])
    np.testing.assert_array_equal(view.subset(np.array([2, 0]))[:], array[[4, 9]])
    np.testing.assert_array_equal(DiskRows.open(tmp_path / "a.u8")[:], array)
    with pytest.raises(IndexError):
        rows[17]


def test_a_writer_that_fails_leaves_nothing(tmp_path):
    writer = RowWriter(tmp_path / "b.u8", 4, (2,), np.float32)
    writer.write(0, np.ones((2, 2), np.float32))
    writer.abandon()
    assert list(tmp_path.iterdir()) == []


def test_prefetched_keeps_order_and_raises_at_the_failing_step():
    assert [(s, x) for s, x in prefetched(list(range(6)), lambda s: s * 10)] == [(i, i * 10) for i in range(6)]

    def load(step):
        if step == 3:
            raise ValueError("bad row")
        return step

    seen = []
    with pytest.raises(ValueError, match="bad row"):
        for step, _ in prefetched(list(range(6)), load):
            seen.append(step)
    assert seen == [0, 1, 2]


def _tree(tmp_path, per_class: int = 4):
    return write_tree(tmp_path / "data", {f"c{k}": per_class for k in range(3)}, size=(12, 10), mode="RGB")


def test_the_decoded_cache_holds_what_memory_would_and_is_reused(tmp_path, monkeypatch):
    root, store = _tree(tmp_path), tmp_path / "store"
    in_memory = load_dataset(root, image_size=(8, 8))
    on_disk = load_dataset(root, image_size=(8, 8), store=store)
    assert not in_memory.on_disk and on_disk.on_disk
    assert on_disk.fingerprint() == in_memory.fingerprint()
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(on_disk, split).images[:], getattr(in_memory, split).images)
        np.testing.assert_array_equal(on_disk.batch(split, slice(None)), in_memory.batch(split, slice(None)))
    assert on_disk.source["decoded"].startswith("on disk") and in_memory.source["decoded"] == "in memory"
    assert on_disk.load_report == in_memory.load_report

    def no_decoding(*_):
        raise AssertionError("a cached image was decoded again")

    monkeypatch.setattr(decoded, "load_pixels", no_decoding)
    again = load_dataset(root, image_size=(8, 8), store=store)
    assert again.fingerprint() == in_memory.fingerprint() and again.source == on_disk.source
    assert len(list(store.iterdir())) == 1


def test_a_changed_file_or_size_is_decoded_again(tmp_path):
    root, store = _tree(tmp_path), tmp_path / "store"
    first = load_dataset(root, store=store)
    load_dataset(root, image_size=(6, 6), store=store)
    assert len(list(store.iterdir())) == 2  # another size, another entry
    changed = root / "c1" / "0.png"
    write_image(changed, size=(12, 10), mode="RGB", seed=99)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert load_dataset(root, store=store).fingerprint() != first.fingerprint()
    assert len(list(store.iterdir())) == 3


def test_a_truncated_cache_file_is_decoded_again(tmp_path):
    root, store = _tree(tmp_path), tmp_path / "store"
    first = load_dataset(root, store=store)
    (rows,) = store.rglob("train.u8")
    with open(rows, "r+b") as f:
        f.truncate(rows.stat().st_size - 7)
    assert load_dataset(root, store=store).fingerprint() == first.fingerprint()
    assert rows.stat().st_size == DiskRows.open(rows).nbytes  # written whole again


def test_the_workers_decode_a_bigger_tree_the_same(tmp_path, monkeypatch):
    monkeypatch.setattr(decoded, "_PARALLEL_FROM", 8)  # workers for this small tree too
    root = _tree(tmp_path, per_class=12)
    (root / "c2" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    parallel = load_dataset(root)
    monkeypatch.setattr(decoded, "_PARALLEL_FROM", 10**9)
    serial_disk = load_dataset(root, store=tmp_path / "store")
    assert parallel.fingerprint() == serial_disk.fingerprint()
    assert parallel.load_report.skipped == ("c2/broken.png",) == serial_disk.load_report.skipped


def test_strict_stops_at_an_unreadable_image_and_keeps_no_half_written_entry(tmp_path):
    root, store = _tree(tmp_path), tmp_path / "store"
    bad = root / "c0" / "9.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="9.png"):
        load_dataset(root, strict=True, store=store)
    assert not list(store.rglob(decoded.INDEX)) and not list(store.rglob("*.partial"))


def test_fill_value_is_the_smallest_model_input(tmp_path):
    data = load_dataset(_tree(tmp_path), store=tmp_path / "store")
    assert data.fill_value() == pytest.approx(float(data.batch("train", slice(None)).min()), abs=0)
