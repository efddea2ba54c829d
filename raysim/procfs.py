"""Processes as Linux's /proc describes them: this one's start time, resident, proportional
and data memory; another's descendants."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(process: str | int) -> list[str]:
    """/proc/<process>/stat after the command name (which may hold spaces and brackets):
    state, parent, ..., start time at index 19. OSError once the process has ended."""
    return Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()


def process_start_unix() -> float:
    """When this command started (not when raysim was imported); now where /proc is absent."""
    try:
        start_ticks = int(_stat_fields("self")[19])
        with open("/proc/stat") as stat_file:
            boot = next(int(line.split()[1]) for line in stat_file if line.startswith("btime"))
        return boot + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return time.time()


def ran_other_programs() -> bool:
    """Whether this process ran other programs before Python, so its start time is theirs:
    a shell that execs its last command (`bash -c "pip install ... && raysim run"`) waited
    for the others, and their CPU time is its children's. Python's start-up and raysim's
    imports start no child."""
    times = os.times()
    return times.children_user + times.children_system > 0


def process_rss_bytes() -> int:
    """Resident set size now, from /proc where it exists (Linux), else the peak."""
    try:
        return int(_statm_fields()[1]) * PAGE_BYTES
    except OSError:
        return peak_rss_bytes()


_peak_rss_before_reset = 0
"""The process's resident peak before its high-water mark was last started again."""


def peak_rss_bytes() -> int:
    """The most this process has held resident, over all of its life."""
    now = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return max(_peak_rss_before_reset, now)


def _kib_fields(path: str, *fields: str) -> dict[str, int] | None:
    """The named figures of a /proc file of `Name:  N kB` lines, in bytes (those it has);
    None where it cannot be read (absent here, or its process has ended)."""
    wanted = {field.encode(): field for field in fields}
    found: dict[str, int] = {}
    try:
        with open(path, "rb") as lines:
            for line in lines:
                name = line.split(b":", 1)[0]
                if name in wanted:
                    found[wanted[name]] = int(line.split()[1]) * 1024
                    if len(found) == len(wanted):
                        break
    except (OSError, ValueError, IndexError):
        return None
    return found


def restart_resident_high_water() -> bool:
    """Start Linux's resident high-water mark (VmHWM) again from what is resident now, so
    that it measures what comes next; False where the kernel does not offer it."""
    global _peak_rss_before_reset
    _peak_rss_before_reset = peak_rss_bytes()
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def anonymous_resident_bytes() -> int:
    """Anonymous pages resident now (RssAnon: statm's resident less its shared, the files'
    and shared memory's pages): what this process's allocations hold, less shared memory,
    which may be another process's (a peer's bucket this one maps)."""
    return anonymous_and_data_bytes()[0]


def anonymous_and_data_bytes() -> tuple[int, int]:
    """anonymous_resident_bytes and data_segment_bytes from one pread of statm: a step
    samples both twice."""
    fields = _statm_fields()
    return (int(fields[1]) - int(fields[2])) * PAGE_BYTES, int(fields[5]) * PAGE_BYTES


def anonymous_resident_high_water_bytes() -> int | None:
    """The most anonymous pages resident at once since the high-water mark was last
    started: VmHWM less the files' and shared memory's pages resident now. In training
    those only grow (code runs for the first time, a peer's bucket is mapped and read), so
    the figure errs low, by the pages of either that came after the peak. None without
    /proc."""
    found = _kib_fields("/proc/self/status", "VmHWM", "RssFile", "RssShmem")
    if found is None or "VmHWM" not in found:
        return None
    return max(found["VmHWM"] - found.get("RssFile", 0) - found.get("RssShmem", 0), 0)


def pss_bytes(process: str | int = "self") -> int | None:
    """Proportional set size: resident memory with each shared page divided among the
    processes that map it. RSS counts torch's and Ray's shared libraries whole in every
    process, so N nodes cost N x PSS, not N x RSS. None where smaps_rollup is absent
    (not Linux, a kernel before 4.14) or the process has ended."""
    return (_kib_fields(f"/proc/{process}/smaps_rollup", "Pss") or {}).get("Pss")


def meminfo_bytes(field: str) -> int | None:
    """A /proc/meminfo figure (MemTotal; MemAvailable: what can be allocated without
    swapping, free memory plus the cache the kernel can reclaim); None without it."""
    return (_kib_fields("/proc/meminfo", field) or {}).get(field)


_statm: tuple[int, int] | None = None
"""(pid, fd) of this process's /proc/<pid>/statm, kept open: a step samples it twice."""


def _statm_fields() -> list[bytes]:
    """This process's statm (sizes in pages: total, resident, shared, text, lib, data): one
    pread of a kept descriptor, reopened after a fork."""
    global _statm
    pid = os.getpid()
    if _statm is None or _statm[0] != pid:
        _statm = (pid, os.open(f"/proc/{pid}/statm", os.O_RDONLY | os.O_CLOEXEC))
    return os.pread(_statm[1], 256, 0).split()


def data_segment_bytes() -> int:
    """What RLIMIT_DATA counts (heap and private writable mappings), from statm's data
    field, which also holds the main thread's stack (~132 KB, which the limit does not
    count): a fifth of the time of opening and parsing /proc/self/status, and a step
    samples it twice."""
    return int(_statm_fields()[5]) * PAGE_BYTES


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (its children, theirs, ...), from /proc; [] without it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            parent = int(_stat_fields(entry.name)[1])
        except (OSError, ValueError, IndexError):  # ended meanwhile
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def is_running(pid: int) -> bool:
    """Whether the process exists and has not ended (a zombie, ended but not yet reaped by
    its parent, has)."""
    try:
        state = _stat_fields(pid)[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def command_line(pid: int) -> list[str]:
    """A process's arguments, from /proc; [] once it has ended."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []
