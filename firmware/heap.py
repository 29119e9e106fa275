"""Hand the C heap's free pages back to the kernel once start-up is done.

Start-up reads every module's bytecode, parses the config and compiles the SIP
grammar: a few MiB of short-lived C-heap buffers. glibc keeps freed heap pages
mapped (it only returns the top of the heap, and only past a threshold), so a
freshly started firmware carries about 1 MiB of pages it will not use again
(docs/benchmarks.md, "Where the firmware's idle RSS goes"). ``malloc_trim(0)``
returns every whole free page (glibc 2.8+ also releases pages in the middle of
the heap). It costs well under a millisecond and is done once.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

__all__ = ["release_free_heap"]


def release_free_heap() -> bool:
    """``malloc_trim(0)``; False where the C library has none (not glibc)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)  # the process's own C library
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        log.debug("no malloc_trim in this C library: heap left as is")
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True
