"""firmware.heap: free C-heap pages really go back to the kernel (glibc here)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from firmware.heap import release_free_heap

CHILD = textwrap.dedent("""
    from firmware.heap import release_free_heap

    def rss_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    # 40 MiB of 2 KiB buffers: below glibc's mmap threshold, so on the heap
    buffers = [bytearray(2048) for _ in range(20_000)]
    keep = buffers[-1]  # the heap's top stays in use: only a mid-heap release helps
    del buffers
    before = rss_kib()
    ok = release_free_heap()
    print(ok, before, rss_kib())
""")


def test_freed_heap_pages_are_returned() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    ok, before, after = out[0] == "True", int(out[1]), int(out[2])
    assert ok
    assert before - after > 30 * 1024, (before, after)  # most of the 40 MiB


def test_calling_it_twice_is_harmless() -> None:
    assert release_free_heap() is True
    assert release_free_heap() is True
