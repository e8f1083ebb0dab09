"""Every test runs with its own edgedistill cache and latency store, never the user's."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp("edgedistill-cache")
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(root))
    monkeypatch.setenv("EDGEDISTILL_LATENCY_STORE", str(root / "latency_store.jsonl"))
