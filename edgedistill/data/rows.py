"""Fixed-shape rows in a file on disk, read by offset: how a dataset bigger than memory is held.

A :class:`DiskRows` quacks like the ``(N, *row_shape)`` numpy array it stores for what the stages
ask of an image array (``shape``, ``dtype``, ``len``, and indexing by int, slice or index array,
which returns an ordinary array), but it reads only the rows asked for. Rows are read with
``os.pread`` rather than through ``np.memmap``: pages of a mapped file count in the process's
resident set for as long as the mapping lives, so one epoch over a memory-mapped 3 GB split leaves
the build at 3 GB RSS, while pread goes through the page cache, which the kernel gives back when
it needs memory and which is not the process's. Each open ``DiskRows`` holds one file descriptor,
reopened after a fork (DataLoader workers).

:class:`RowWriter` fills such a file at known offsets (any order, from any process that has the
path) and publishes it atomically: a reader never sees a half-written file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

META_SUFFIX = ".json"


class DiskRows:
    def __init__(self, path: Path | str, shape: tuple[int, ...], dtype: str | np.dtype,
                 rows: np.ndarray | None = None) -> None:
        self.path = Path(path)
        self._full = (int(shape[0]), *map(int, shape[1:]))
        self.dtype = np.dtype(dtype)
        self._row_bytes = int(np.prod(self._full[1:], dtype=np.int64)) * self.dtype.itemsize
        # rows: which stored rows this view holds, in order (None: all of them)
        self._rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self._fd: int | None = None
        self._pid = -1

    @classmethod
    def open(cls, path: Path | str) -> "DiskRows":
        """A file written by :class:`RowWriter` (its shape and dtype are in the ``.json`` beside it)."""
        meta = json.loads(Path(f"{path}{META_SUFFIX}").read_text())
        return cls(path, tuple(meta["shape"]), meta["dtype"])

    # -- the array face --------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        n = self._full[0] if self._rows is None else len(self._rows)
        return (n, *self._full[1:])

    @property
    def ndim(self) -> int:
        return len(self._full)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        n = len(self)
        if isinstance(key, (int, np.integer)):
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"row {key} out of range for {n} rows")
            return self._read(np.asarray([i]))[0]
        if isinstance(key, slice):
            return self._read(np.arange(n)[key])
        index = np.asarray(key)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        index = np.where(index < 0, index + n, index).astype(np.int64)
        if index.size and (index.min() < 0 or index.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        return self._read(index)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def subset(self, index: np.ndarray) -> "DiskRows":
        """A view of some rows (by position in this view), reading the same file."""
        index = np.asarray(index, dtype=np.int64)
        stored = index if self._rows is None else self._rows[index]
        return DiskRows(self.path, self._full, self.dtype, rows=stored)

    # -- reading ---------------------------------------------------------------------------
    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDONLY)
            self._pid = os.getpid()
        return self._fd

    def _read(self, index: np.ndarray) -> np.ndarray:
        stored = index if self._rows is None else self._rows[index]
        out = np.empty((len(stored), *self._full[1:]), dtype=self.dtype)
        if not len(stored):
            return out
        flat = out.reshape(len(stored), -1).view(np.uint8)
        fd = self._descriptor()
        # Read runs of consecutive stored rows with one call each (a slice is a single run).
        order = np.argsort(stored, kind="stable")
        sorted_rows = stored[order]
        breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
        for run in np.split(np.arange(len(sorted_rows)), breaks):
            first, count = int(sorted_rows[run[0]]), len(run)
            data = _pread_exact(fd, count * self._row_bytes, first * self._row_bytes, self.path)
            block = np.frombuffer(data, dtype=np.uint8).reshape(count, self._row_bytes)
            flat[order[run]] = block
        return out

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass

    def __getstate__(self) -> dict:  # pickled into DataLoader workers: without the descriptor
        return {**self.__dict__, "_fd": None, "_pid": -1}

    def __repr__(self) -> str:
        return f"DiskRows({self.path.name}, shape={self.shape}, dtype={self.dtype})"


def _pread_exact(fd: int, nbytes: int, offset: int, path: Path) -> bytes:
    parts, done = [], 0
    while done < nbytes:
        chunk = os.pread(fd, nbytes - done, offset + done)
        if not chunk:
            raise OSError(f"{path} ends before byte {offset + nbytes} (file truncated?)")
        parts.append(chunk)
        done += len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class RowWriter:
    """Write ``n`` rows of ``row_shape`` to ``path`` at their offsets, then :meth:`publish` it.

    The rows go to ``path.partial`` first; ``publish`` shrinks it to the rows actually written
    (``count``) and renames it and its ``.json`` into place."""

    def __init__(self, path: Path | str, n: int, row_shape: tuple[int, ...], dtype: str | np.dtype) -> None:
        self.path = Path(path)
        self.row_shape = tuple(int(s) for s in row_shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(self._fd, n * self.row_bytes)

    def write(self, start: int, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"rows of shape {rows.shape[1:]}, expected {self.row_shape}")
        os.pwrite(self._fd, rows.tobytes(), start * self.row_bytes)

    def publish(self, count: int) -> DiskRows:
        os.ftruncate(self._fd, count * self.row_bytes)
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        meta = {"shape": [count, *self.row_shape], "dtype": self.dtype.str}
        meta_tmp = Path(f"{self.partial}{META_SUFFIX}")
        meta_tmp.write_text(json.dumps(meta))
        os.replace(self.partial, self.path)
        os.replace(meta_tmp, Path(f"{self.path}{META_SUFFIX}"))
        return DiskRows(self.path, (count, *self.row_shape), self.dtype)

    def abandon(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.partial.unlink(missing_ok=True)
