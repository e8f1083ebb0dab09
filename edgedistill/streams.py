"""The standard streams at the file-descriptor level: stdout for the ``--json`` document alone, and
no native runtime chatter on stderr.

``--json`` promises one document on stdout that ``json.load`` or ``jq`` can read. Converters and
runtimes print progress from Python and from native code, which writes to fd 1 directly, so
swapping ``sys.stdout`` is not enough. :func:`stdout_to_stderr` points fd 1 itself at stderr while
the work runs; the caller prints its JSON after the block, when fd 1 is stdout again::

    with stdout_to_stderr(json_out):
        result = do_the_work()
    if json_out:
        print(json.dumps(result))

:func:`quiet_native_stderr` does the like for fd 2 around loading a model: LiteRT's native code
prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` when an interpreter first takes
the delegate. That line is dropped; anything else written meanwhile is written out afterwards.
``EDGEDISTILL_DEBUG=1`` keeps it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

# Native INFO lines that say nothing a user can act on (LiteRT prints each once per process).
NATIVE_NOISE = (
    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    b"INFO: Initialized TensorFlow Lite runtime.",
)

_lock = threading.Lock()
_stdout_depth = 0
_stdout_saved: int | None = None
_stderr_depth = 0
_stderr_state: tuple[int, object] | None = None  # (saved fd 2, temporary file)


def _flush_all() -> None:
    """Python's buffers and C stdio's, so nothing written before a switch lands after it."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except Exception:  # no C library to ask (not expected on Linux or macOS)
        pass


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool = True) -> Iterator[None]:
    """Within the block everything written to stdout, by Python or native code, goes to stderr.

    ``enabled=False`` does nothing (``with stdout_to_stderr(json_out):``). Safe to nest and to
    enter from several threads: the outermost block switches fd 1 and switches it back."""
    global _stdout_depth, _stdout_saved
    if not enabled:
        yield
        return
    with _lock:
        if _stdout_depth == 0:
            _flush_all()
            try:
                _stdout_saved = os.dup(1)
                os.dup2(2, 1)
            except OSError:  # no fd 1 or 2 to work with: the Python-level switch below still holds
                _stdout_saved = None
        _stdout_depth += 1
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        with _lock:
            _stdout_depth -= 1
            if _stdout_depth == 0 and _stdout_saved is not None:
                _flush_all()
                os.dup2(_stdout_saved, 1)
                os.close(_stdout_saved)
                _stdout_saved = None


def _drop_noise(data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    return b"".join(line for line in lines if line.rstrip(b"\r\n") not in NATIVE_NOISE)


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Keep :data:`NATIVE_NOISE` lines off stderr within the block (wrap interpreter creation and
    its first ``allocate_tensors``). Everything else written to fd 2 meanwhile is kept and written
    out when the outermost block ends. ``EDGEDISTILL_DEBUG=1``: a no-op."""
    global _stderr_depth, _stderr_state
    if os.environ.get("EDGEDISTILL_DEBUG"):
        yield
        return
    with _lock:
        if _stderr_depth == 0:
            _flush_all()
            try:
                capture = tempfile.TemporaryFile()
                saved = os.dup(2)
                os.dup2(capture.fileno(), 2)
                _stderr_state = (saved, capture)
            except OSError:
                _stderr_state = None
        _stderr_depth += 1
    try:
        yield
    finally:
        with _lock:
            _stderr_depth -= 1
            if _stderr_depth == 0 and _stderr_state is not None:
                saved, capture = _stderr_state
                _stderr_state = None
                _flush_all()
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                kept = _drop_noise(capture.read())
                capture.close()
                while kept:
                    kept = kept[os.write(2, kept):]
