"""Freed heap memory goes back to the OS during streamed work (glibc's malloc_trim)."""
from __future__ import annotations

import platform
import threading

import numpy as np
import pytest

from crossearth_sar.core.inference.memory import release_free_memory


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024.0 for line in f if line.startswith("VmRSS:"))


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's")
def test_memory_freed_on_another_thread_is_returned():
    keep = []

    def churn():
        # 64 KiB blocks stay below glibc's mmap threshold: they come from this thread's arena
        blocks = [np.ones(8192) for _ in range(6000)]       # about 384 MB
        keep.append(np.ones(8))                              # one survivor at the arena's top
        del blocks

    t = threading.Thread(target=churn)
    t.start()
    t.join()
    before = _rss_mb()
    assert release_free_memory() is True
    after = _rss_mb()
    assert before - after > 100, (before, after)
