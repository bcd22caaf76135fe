"""Handing freed memory back to the operating system between the steps of a long build."""

from __future__ import annotations

import ctypes
import functools
import os
import sys


def return_freed_pages_at_once() -> None:
    """Have polars' allocator (jemalloc) purge freed pages at once. It keeps them until something allocates again
    (polars asks for a 0.5 s decay, but jemalloc purges only on later allocations), and a build's driver allocates
    little while PII runs: the pages of dedup's and the cap's peaks stayed resident through pass 2, where a whole
    build peaks; returned at once, pass 2 peaks lower at the same speed (docs/benchmarks.md, memory). polars reads
    the variable when it loads, after its own defaults, so this runs before polars is imported (`import builders`
    does it); a value the user set is kept."""
    os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None (not Linux, or another C library)."""
    if sys.platform.startswith("linux"):
        try:
            return ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            pass
    return None


def release_memory() -> None:
    """Hand freed memory back to the operating system. Arrow's allocator and glibc's malloc keep freed pages for
    reuse; in a long streaming build that made every chunk's high-water mark permanent (on the 1M benchmark log,
    355 of the 687 MB held after validation were freed pages)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    if (trim := _malloc_trim()) is not None:
        trim(0)
