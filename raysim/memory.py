"""Measure a process's memory (and, later, enforce each node's partition)."""

from __future__ import annotations

import os
import resource


def process_rss_bytes() -> int:
    """Resident set size now, from /proc where it exists (Linux), else the peak."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
