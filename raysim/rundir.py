"""The run directory: its file names, and reading and appending its logs.

Every run writes one self-contained folder (`run_dir/run_name`) that reports read
back without re-running anything. This module is the one place that knows its layout.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from raysim.errors import ConfigError

CONFIG_FILE = "config.yaml"
"""The resolved config the run was made with."""
METRICS_FILE = "metrics.jsonl"
"""One line per rank per epoch, one aggregate line per epoch, failures and recoveries."""
SUMMARY_FILE = "summary.json"
"""Run-level figures, written when the run ends."""
TENSORBOARD_DIR = "tensorboard"
TRACE_FILE = "trace.json"
"""The timeline of the traced steps on every node (Chrome trace event format)."""
PROFILE_DIR = "profile"
"""torch.profiler's trace of each node (profile_steps), one file per node."""
SCRIPT_OUTPUT_DIR = "output"
"""A launched script's output, one file per node (raysim launch)."""
FAULTS_DIR = "faults"
"""Markers of injected faults that fired (each fires once per run), and of hangs found."""
COLLECTIVES_DIR = "collectives"
"""Each rank's ledger of the collectives it entered (raysim.worker.collective_ledger)."""
NODE_MEMORY_DIR = "node_memory"
"""Each node's training memory, rewritten while its CPU partition is enforced and removed
when the node ends: what a process that died at its partition's limit leaves behind."""
MLFLOW_DB_FILE = "mlflow.db"
"""The MLflow database (SQLite) of a run tracked with the default tracking.mlflow.uri."""
MLFLOW_ARTIFACTS_DIR = "mlartifacts"
"""Where that default store keeps the MLflow run's artifacts."""
MLFLOW_RUN_FILE = "mlflow.json"
"""Which MLflow run the run is logged to (tracking URI, experiment and run id)."""
WANDB_DIR = "wandb"
"""Weights & Biases' own files of the run (offline-run-<time>-<id>/, one per process that
opened it), which `wandb sync` uploads."""
WANDB_RUN_FILE = "wandb.json"
"""Which W&B run the run is logged to (project, mode and run id)."""

RAYSIM_KEYS = frozenset(
    {
        "kind", "epoch", "rank", "world_size", "node_id", "ray_node_id", "report_unix",
        "interval_s", "rss_bytes", "peak_rss_bytes", "pss_bytes", "memory_budget_bytes",
        "memory_peak_bytes", "memory_headroom_bytes", "report_s", "prepared", "model",
        "straggler_sleep_s_per_step", "modelled_comm_s_per_step", "allreduce_wait_s_per_step",
        "added_comm_delay_s_per_step", "optimizer_steps", "measured_samples", "train_time_s",
        "step_time_s", "samples_per_s", "data_wait_s_per_step", "slowest_rank", "slowest_cause",
        "wall_time_s",
        "cuda_peak_allocated_bytes", "cuda_peak_reserved_bytes", "nvml_device_used_bytes",
        "nvml_device_total_bytes", "nvml_gpu_utilization_pct", "nvml_process_used_bytes",
        "startup", "memory_baseline_bytes", "memory_limit_peak_bytes", "shared_memory_allreduce",
    }
)  # fmt: skip
"""What raysim itself writes in the metrics lines; every other key is the function's own."""
ALLREDUCE_KEY = "shared_memory_allreduce"
"""The report's key for whether the node's gradients were averaged through shared memory."""
STARTUP_KEY = "startup"
"""The report's key for a node's start-up marks (raysim.worker.startup), sent once."""
TRACE_KEY = "trace_spans"
"""The report's key for the spans traced on a node since its last report: the recorder
takes it out of the report into trace.json, so metrics lines never hold it."""
PREEMPT_CHECKPOINT_KEY = "preempt_checkpoint"
"""Marks a report as the just-in-time checkpoint on a preemption notice (not an epoch)."""


def node_memory_path(run_dir: str | Path, rank: int) -> Path:
    return Path(run_dir) / NODE_MEMORY_DIR / f"rank-{rank}.txt"


def script_output_path(run_dir: str | Path, rank: int) -> Path:
    return Path(run_dir) / SCRIPT_OUTPUT_DIR / f"node-{rank}.log"


def raysim_home() -> Path:
    """raysim's own files outside runs (decoded-image cache, standing cluster): $RAYSIM_HOME,
    default ~/.raysim."""
    return Path(os.environ.get("RAYSIM_HOME", Path.home() / ".raysim"))


def create_run_dir(run_dir: str, run_name: str | None, num_nodes: int) -> Path:
    """A new, writable run directory; an existing one is never reused by accident."""
    name = run_name or f"{datetime.now():%Y%m%d-%H%M%S}-{num_nodes}node"
    path = (Path(run_dir) / name).resolve()
    try:
        path.mkdir(parents=True, exist_ok=False)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except FileExistsError:
        raise ConfigError(
            [f"run directory {path} already exists; choose another run_name or remove it"]
        ) from None
    except OSError as err:
        raise ConfigError(
            [f"cannot write the run directory {path} ({err.strerror}); set run_dir to a "
             "writable folder"]
        ) from None  # fmt: skip
    return path


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_FILE).is_file()


def train_run_name(run_dir: Path) -> str:
    """The run's name for Ray Train (its storage folder and its entry in Ray's state API):
    Ray Train fails on names that are not ASCII, so other characters become '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_dir.name)


class RunDirError(ValueError):
    """A run directory's file that cannot be read back; the message names it and the fix."""


def write_json(path: Path, data: Any) -> None:
    """Write a whole file or leave the old one: a kill mid-write must not tear it, so the
    text goes to a temporary file beside it that then replaces it in one rename."""
    text = json.dumps(data, indent=2)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def read_json(path: Path) -> Any:
    """A JSON file of the run directory, or a RunDirError naming it."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RunDirError(
            f"{path} is not valid JSON ({err.msg}, line {err.lineno}); the run was stopped "
            "while writing it: re-run it, or remove the file to read the rest of the run"
        ) from None


def append_lines(path: Path, records: list[dict[str, Any]]) -> None:
    """Append and flush at once, so a crash later loses no line written before it."""
    with path.open("a") as log:
        for record in records:
            log.write(json.dumps(record) + "\n")
        log.flush()


def read_lines(path: Path) -> list[dict[str, Any]]:
    """All complete records. A torn last line (a crash mid-write, or a line still being
    appended) is skipped; a bad line before it is corruption, told as a RunDirError."""
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise RunDirError(
                f"{path} line {number} is not a JSON record (corrupt or edited by hand); "
                "remove or repair that line to read the run"
            ) from None
    return records


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The run's metrics log, or nothing if no line was written yet."""
    path = run_dir / METRICS_FILE
    return read_lines(path) if path.exists() else []


def epoch_lines(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("kind") == "epoch"]


def rank_lines(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("kind") == "rank"]


def found_stalls(run_dir: Path) -> list[dict]:
    """The hangs the ranks' watches found (raysim.worker.hang_watch), in time order."""
    stalls = _markers(Path(run_dir) / FAULTS_DIR, "stall-*.json")
    return sorted(stalls, key=lambda stall: stall["detected_unix"])


def _markers(folder: Path, pattern: str) -> list[dict]:
    """Each marker file's JSON; a marker still being written is left for the next look."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob(pattern)):
        try:
            found.append(json.loads(path.read_text()))
        except json.JSONDecodeError:
            continue
    return found


def fired_faults(run_dir: Path) -> list[dict]:
    """The faults fired so far; a marker still being written is left for the next look."""
    return _markers(Path(run_dir) / FAULTS_DIR, "fault-*.json")
