"""The run directory: one folder per stage holding its result, so a rerun skips finished stages.

A stage is keyed by a hash of its inputs (config and the results of the stages it reads). If the
key on disk matches and the stage wrote its ``result.json``, the stage is done and is skipped; if
the key differs the folder is wiped and the stage runs again; if the key matches but no result was
written (an interrupted run), the stage runs again in the same folder, where a training stage
finds its epoch checkpoint and resumes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgedistill.fsutil import write_json_atomic


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Stage:
    name: str
    dir: Path
    key: str

    @property
    def result_path(self) -> Path:
        return self.dir / "result.json"

    def load(self, *, files: tuple[str, ...] = ()) -> dict | None:
        """The stored result when this stage already finished with the same inputs and its
        ``files`` are still there; None (run the stage again) for anything else, a damaged or
        hand-edited result.json included."""
        if not self.result_path.exists():
            return None
        try:
            stored = json.loads(self.result_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        if not isinstance(stored, dict) or stored.get("key") != self.key or not isinstance(stored.get("result"), dict):
            return None
        if not all((self.dir / f).is_file() for f in files):
            return None
        return stored["result"]

    def begin(self) -> bool:
        """Prepare the folder; True when an interrupted attempt with the same inputs is resumed."""
        key_file = self.dir / "key.txt"
        resumed = key_file.exists() and key_file.read_text().strip() == self.key
        if not resumed and self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        key_file.write_text(self.key + "\n")
        return resumed and any(p.name != "key.txt" for p in self.dir.iterdir())

    def save(self, result: dict) -> dict:
        write_json_atomic(self.result_path, {"key": self.key, "result": result})
        return result


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def stage(self, name: str, inputs: Any) -> Stage:
        return Stage(name, self.path / name, stable_hash(inputs))
