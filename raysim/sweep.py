"""Run one experiment at several cluster sizes in one Ray session, then compare them."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from raysim.cluster import SimCluster, dashboard_banner, dashboard_port_of, hardware_for, joined
from raysim.config import ConfigError, ExperimentConfig, dump_yaml, replace
from raysim.experiment import run
from raysim.failures import RunFailedError
from raysim.plan import make_plan
from raysim.projection.target import Target
from raysim.report import compare
from raysim.rundir import CONFIG_FILE, SUMMARY_FILE, write_json


def sweep_configs(
    base: ExperimentConfig, sweep_dir: Path, num_nodes: list[int], batch_sizes: list[int]
) -> list[ExperimentConfig]:
    return [
        replace(base, num_nodes=n, batch_size=b, run_dir=str(sweep_dir), run_name=f"n{n}-b{b}")
        for n, b in itertools.product(num_nodes, batch_sizes)
    ]


def _record_failure(cfg: ExperimentConfig, error: Exception) -> Path:
    """A run that could not start still gets a run directory, so the report can show it."""
    run_dir = Path(cfg.run_dir) / str(cfg.run_name)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(dump_yaml(cfg))
    summary_path = run_dir / SUMMARY_FILE
    if not summary_path.exists():
        # a config error's first line is its heading: the report shows the problems instead
        why = "; ".join(error.problems) if isinstance(error, ConfigError) else str(error)
        write_json(summary_path, {"status": "failed", "error": why})
    return run_dir


def sweep(
    base: ExperimentConfig,
    num_nodes: list[int],
    batch_sizes: list[int] | None = None,
    target_accuracy: float | None = None,
    out: TextIO | None = None,
    train_fn: Callable[[dict], None] | None = None,
    target: Target | None = None,
    step_time_ms: float | None = None,
    usd_per_gpu_hour: str | None = None,
) -> dict[str, Any]:
    """Runs one after another; a failed run is reported as failed and the others still count.
    train_fn: the user's per-node function (default: the built-in experiment); target: also
    project each run onto that real cluster in the report."""
    name = base.run_name or f"sweep-{datetime.now():%Y%m%d-%H%M%S}"
    sweep_dir = (Path(base.run_dir) / name).resolve()
    configs = sweep_configs(base, sweep_dir, num_nodes, batch_sizes or [base.batch_size])
    with joined(base.address, base.verbose):  # one connection for every run
        hw = hardware_for(base)
        largest = max(configs, key=lambda c: c.num_nodes)
        cluster_plan = make_plan(replace(largest, num_nodes=1), hw)
        run_dirs = []
        shared = (
            SimCluster(cluster_plan, base.address, base.verbose, dashboard_port_of(base))
            if base.topology == "single_host"
            else contextlib.nullcontext()  # multi_node: each run starts a cluster of its own
        )
        with shared as cluster:
            if out is not None and cluster is not None and cluster.dashboard_url:
                print(dashboard_banner(cluster.dashboard_url, cluster.metrics_url), file=out)
            for cfg in configs:
                try:
                    run_dirs.append(run(cfg, train_fn=train_fn, out=out).run_dir)
                except (RunFailedError, ConfigError) as err:
                    if out is not None:
                        print(f"raysim: {cfg.run_name} failed: {err}", file=out, flush=True)
                    run_dirs.append(_record_failure(cfg, err))
    comparison = compare(run_dirs, out=sweep_dir / "report", target_accuracy=target_accuracy,
                         target=target, step_time_ms=step_time_ms,
                         usd_per_gpu_hour=usd_per_gpu_hour)  # fmt: skip
    comparison["report_dir"] = str(sweep_dir / "report")
    return comparison
