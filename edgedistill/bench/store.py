"""The latency store: every measurement ever taken, one JSON object per line.

The latency model refits from this file, so it is append-only and each record is a whole line:
a reader never sees half a record, even while another process appends. A line that does not
parse (a crash mid-write on a filesystem without atomic appends) is skipped, not fatal.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from pathlib import Path

from edgedistill.bench.measurement import Measurement
from edgedistill.errors import InputError
from edgedistill.paths import cache_dir

STORE_ENV = "EDGEDISTILL_LATENCY_STORE"
_append_lock = threading.Lock()


def default_store_path() -> Path:
    env = os.environ.get(STORE_ENV)
    return Path(env).expanduser() if env else cache_dir() / "latency_store.jsonl"


class LatencyStore:
    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_store_path()

    def append(self, m: Measurement) -> None:
        if getattr(m, "emulated", False):  # an emulated board's timing says nothing of the device's speed
            return
        line = (json.dumps(m.to_dict(), sort_keys=True) + "\n").encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _append_lock, open(self.path, "ab") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)  # other edgedistill processes appending too
                try:
                    handle.write(line)
                    handle.flush()
                    os.fsync(handle.fileno())
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        except OSError as err:
            raise InputError(
                f"cannot append to the latency store {self.path}: {err.strerror}",
                hint=f"pass --store PATH or set ${STORE_ENV} to a writable file",
            ) from err

    def records(self) -> list[Measurement]:
        if not self.path.exists():
            return []
        out = []
        with open(self.path, "r", encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    out.append(Measurement.from_dict(json.loads(line)))
                except (ValueError, TypeError):
                    continue
        return out

    def for_model(self, sha256: str) -> list[Measurement]:
        return [m for m in self.records() if m.model_sha256 == sha256]
