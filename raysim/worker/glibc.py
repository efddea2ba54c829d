"""glibc's allocator, through ctypes: the bytes it holds free, and a fixed mmap threshold.
Where the C library is not glibc (musl, macOS), nothing is held free as far as raysim can
tell (0) and the threshold stays as it is."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_MMAP_THRESHOLD = -3
"""mallopt's parameter number (malloc.h)."""


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost",
        )
    ]  # fmt: skip


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    return None if name is None else ctypes.CDLL(name)


@functools.cache
def _mallinfo2():
    libc = _libc()
    found = getattr(libc, "mallinfo2", None) if libc is not None else None  # glibc 2.33+
    if found is not None:
        found.restype = _MallInfo2
    return found


def free_heap_bytes() -> int:
    """Bytes in glibc's heaps that are free but kept (freed tensors it will reuse): resident
    where they were written, yet holding nothing. About 5 µs."""
    mallinfo2 = _mallinfo2()
    return 0 if mallinfo2 is None else int(mallinfo2().fordblks)


def fix_mmap_threshold(threshold_bytes: int) -> None:
    """Allocations from threshold_bytes up are mapped and unmapped on their own, so a freed
    one leaves the process (glibc otherwise raises the threshold to the largest it freed and
    keeps later ones in its heap)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(M_MMAP_THRESHOLD, threshold_bytes)
