"""heap.give_back hands freed heap pages back to the system (glibc's malloc_trim)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import numpy as np
    from edgedistill import heap

    def rss_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    # 64 KB blocks come from the heap (below glibc's mmap threshold); freeing every other one
    # leaves gaps the heap cannot shrink past, the pattern training steps leave behind.
    blocks = [np.ones(8192) for _ in range(4000)]
    del blocks[::2]
    before = rss_mb()
    ok = heap.give_back()
    print(ok, before, rss_mb())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_give_back_returns_the_gaps_between_live_blocks():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    ok, before, after = out[0] == "True", float(out[1]), float(out[2])
    assert ok
    # 2000 freed 64 KB blocks are 125 MB; most of them must leave the resident set
    assert before - after > 80, (before, after)
