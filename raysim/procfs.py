"""This process as Linux's /proc describes it: start time, resident and data memory."""

from __future__ import annotations

import os
import resource
import time


def process_start_unix() -> float:
    """When this command started (not when raysim was imported); now where /proc is absent."""
    try:
        with open("/proc/self/stat") as stat_file:
            start_ticks = int(stat_file.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as stat_file:
            boot = next(int(line.split()[1]) for line in stat_file if line.startswith("btime"))
        return boot + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return time.time()


def process_rss_bytes() -> int:
    """Resident set size now, from /proc where it exists (Linux), else the peak."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def data_segment_bytes() -> int:
    """VmData: what RLIMIT_DATA counts (heap and private writable mappings)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmData in /proc/self/status")
