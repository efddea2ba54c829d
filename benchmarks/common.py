"""What every kept result records: the commit, the exact command, the machine, versions, date."""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from importlib import metadata
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


def timed_raysim(flags: list[str], timeout: float | None = None) -> float:
    """`raysim FLAGS` as a fresh process (its output kept out of the benchmark's); its wall
    time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "raysim.cli", *flags], check=True,
                   capture_output=True, timeout=timeout)  # fmt: skip
    return time.perf_counter() - start


def gpu_name() -> str | None:
    """The first GPU as nvidia-smi names it, None without one (no torch import needed)."""
    if shutil.which("nvidia-smi") is None:
        return None
    done = subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
    )
    names = done.stdout.strip().splitlines()
    return names[0] if done.returncode == 0 and names else None


VERSIONED = ("torch", "torchvision", "ray", "numpy", "mlflow-skinny")


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in VERSIONED:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def provenance() -> dict:
    """For the top of a result file: what made it, where, with what, when."""
    return {
        "commit": git_commit(Path(__file__).resolve().parent),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "machine": {**machine(), "gpu": gpu_name()},
        "versions": versions(),
        "date": time.strftime("%Y-%m-%d"),
    }
