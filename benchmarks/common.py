"""What every kept result records: the commit, the exact command, the machine, versions, date.

A result is written from a committed tree only: `git describe --always --dirty` is
recorded, and a tree with uncommitted changes is refused before the measurement starts
and again before the file is written (`--allow-dirty`, for tests, records it as dirty).
The kept results under benchmarks/results/ do not count as changes, so run_all.py's
later benchmarks still run after its first one has rewritten its file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEPT = ":(top,exclude)benchmarks/results"
"""Pathspec: what the benchmarks write is no change to what they measure."""


def git(tree: Path, *args: str) -> str | None:
    """Git's output, its last newline removed; None outside a git checkout."""
    done = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True)
    return done.stdout.rstrip("\n") if done.returncode == 0 else None


def git_commit(tree: Path) -> str | None:
    return git(tree, "rev-parse", "--short", "HEAD")


def uncommitted(tree: Path) -> list[str]:
    """Tracked files changed against HEAD, outside the kept results (as `--dirty` counts)."""
    status = git(tree, "status", "--porcelain", "--untracked-files=no", "--", ":/", KEPT)
    return [line[3:] for line in (status or "").splitlines()]


def describe(tree: Path) -> str | None:
    """`git describe --always --dirty`, with the kept results left out of "dirty"."""
    name = git(tree, "describe", "--always")
    return name and name + ("-dirty" if uncommitted(tree) else "")


def require_clean(allow_dirty: bool, tree: Path = HERE) -> None:
    """Refuse, in one line, to measure or write a result from uncommitted code."""
    changed = uncommitted(tree)
    if changed and not allow_dirty:
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        raise SystemExit(
            f"benchmarks: uncommitted changes ({changed[0]}{more}): commit first, so the "
            "result names the code it measured (--allow-dirty: tests only)"
        )


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """The bench's arguments, with --allow-dirty; a dirty tree refused before any measuring."""
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="measure an uncommitted tree (tests only; recorded as -dirty)",
    )
    args = parser.parse_args(argv)
    require_clean(args.allow_dirty)
    return args


def source_tree(spec: str, scratch: Path) -> tuple[Path, str]:
    """One side of an A/B: a folder as it is, or a commit's files (git archive, no .git)
    under scratch; with the words a result records for it."""
    if Path(spec).is_dir():
        path = Path(spec).resolve()
        commit = git_commit(path)
        return path, f"{path} ({commit})" if commit else str(path)
    commit = git(HERE, "rev-parse", "--short", "--verify", "--quiet", f"{spec}^{{commit}}")
    if not commit:
        raise SystemExit(f"benchmarks: --tree {spec}: neither a folder nor a commit")
    into = scratch / commit
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(HERE), "archive", commit], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into, f"commit {commit}"


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


def provenance(allow_dirty: bool) -> dict:
    """For the top of a result file: what made it, where, with what, when (the tree
    checked clean once more: an edit during a long run would go unrecorded)."""
    require_clean(allow_dirty)
    return {
        "commit": git_commit(HERE),
        "describe": describe(HERE),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "machine": {**machine(), "gpu": gpu_name()},
        "versions": versions(),
        "date": time.strftime("%Y-%m-%d"),
    }


def bench_result(args: argparse.Namespace, settings: dict, **fields) -> dict:
    """A bench's result: provenance, its arguments with `settings`, then `fields`; kept
    where --out names a file."""
    results = {**provenance(args.allow_dirty), "settings": vars(args) | settings, **fields}
    if args.out:
        keep(results, args.out)
    return results


def keep(results: dict, out: str) -> dict:
    """Write a result file (its folder made) and print it, less its settings."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "settings"}, indent=2))
    return results
