"""How long a test waits for a CLI subprocess. The e2e builds take about a minute on an idle
2-core machine but several times that on a loaded one: a test should wait, not fail, and only a
hang should hit the limit. ``EDGEDISTILL_TEST_TIMEOUT_S`` overrides it."""

from __future__ import annotations

import os

CLI_TIMEOUT_S = int(os.environ.get("EDGEDISTILL_TEST_TIMEOUT_S", "3600"))
