"""What a test sees of the Ray nodes it started: the processes that name a temp dir.

Only to look: the tests end their nodes by pid (raysim.cluster.standing.end_tree)."""

from __future__ import annotations

import os
from pathlib import Path


def processes_naming(text: str) -> list[int]:
    """Pids whose command line contains text (a cluster's own temp dir), this one aside."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids
