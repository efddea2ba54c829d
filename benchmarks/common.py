"""What every kept result records: the commit, the exact command, the machine, versions, date."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path


def git_commit(tree: Path) -> str | None:
    done = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() if done.returncode == 0 else None


def machine() -> dict:
    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu_model = next(
                (line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), ""
            )
        with open("/proc/meminfo") as meminfo:
            memory_kb = int(
                next(line for line in meminfo if line.startswith("MemTotal")).split()[1]
            )
    except (OSError, StopIteration):
        memory_kb = 0
    return {
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory_kb / 2**20, 1),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def provenance() -> dict:
    """For the top of a result file."""
    return {
        "commit": git_commit(Path(__file__).resolve().parent),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
