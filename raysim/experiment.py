"""The spine of a run: config → plan → cluster → Ray Train fit → a self-contained run dir."""

from __future__ import annotations

import contextlib
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from raysim.builtin.checks import check_data, check_weights, decodes_images, parameter_count
from raysim.cluster import (
    NodeLossWatcher,
    SimCluster,
    dashboard_banner,
    dashboard_port_of,
    hardware_for,
    joined,
    scoped_env,
)
from raysim.cluster.train_helpers import cluster_is_this_host, lean_torch_trainer, run_helpers
from raysim.config import ExperimentConfig, dump_yaml
from raysim.console import ProgressFollower, make_board, node_lost_line, summary_table
from raysim.failures import NodeMemory, RunFailedError, failure_message
from raysim.plan import Hardware, PlanError, ResourcePlan, make_plan
from raysim.plan.memory_floor import ADAM_MOMENTS, state_floor_problem
from raysim.preload import ImportsAhead
from raysim.procfs import process_start_unix, ran_other_programs
from raysim.record.mlflow_tracking import MlflowRun, tracked, tracker_for
from raysim.report.summary import summarize
from raysim.rundir import (
    CONFIG_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    create_run_dir,
    epoch_lines,
    node_memory_path,
    raysim_home,
    read_metrics,
    train_run_name,
)
from raysim.worker.startup import StartupMarks
from raysim.worker.strategies import get_strategy

WORKER_START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"


@dataclass
class RunResult:
    run_dir: Path
    config: ExperimentConfig
    epochs: list[dict[str, Any]]
    """Aggregate metrics per epoch, as in metrics.jsonl."""
    summary: dict[str, Any]

    @property
    def final_test_accuracy(self) -> float:
        return self.summary["final_test_accuracy"]


def environment_facts(hw: Hardware, plan: ResourcePlan) -> dict[str, Any]:
    import ray
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "platform": platform.platform(),
        "cpus": hw.num_cpus,
        "gpus": hw.num_gpus,
        "gpu_name": hw.gpu_name,
        "device_kind": plan.device_kind,
        "backend": plan.backend,
        "resources_per_worker": plan.resources_per_worker,
        "torch_threads_per_worker": plan.torch_threads,
        "device_memory_bytes": plan.device_memory_bytes,
        "simulated_device": plan.simulated_device,
    }


def ship_by_value(train_fn: Callable) -> None:
    """Ray's controller and workers unpickle the function; a module of the user's own
    (not installed, maybe not on their path) travels with it instead of by name."""
    from ray import cloudpickle  # Ray pickles with its own copy

    module = sys.modules.get(getattr(train_fn, "__module__", "") or "")
    if module is None or module.__name__ == "__main__":
        return  # __main__ is pickled by value already
    if "site-packages" not in (getattr(module, "__file__", "") or ""):
        cloudpickle.register_pickle_by_value(module)


def _train(
    cfg: ExperimentConfig,
    plan: ResourcePlan,
    run_dir: Path,
    train_fn: Callable | None,
    progress_board: Any = None,
    tracker: MlflowRun | None = None,
    marks: StartupMarks | None = None,
) -> None:
    """Ray Train's fit() of the training function on the planned workers (marks: the
    driver's start-up marks, fit_start added)."""
    import ray.train
    from ray.train.torch import TorchConfig

    from raysim.builtin import resnet18_experiment
    from raysim.record import MetricsRecorder
    from raysim.worker.launchers import FunctionLauncher, run_node

    if train_fn is not None:
        ship_by_value(train_fn)
    trainer = lean_torch_trainer()(  # without the helper actors raysim does not use
        train_loop_per_worker=run_node,
        train_loop_config={
            "experiment": cfg,
            "plan": plan,
            "run_dir": str(run_dir),
            "launcher": FunctionLauncher(train_fn or resnet18_experiment),
            "progress_board": progress_board,
        },  # fmt: skip
        torch_config=TorchConfig(backend=plan.backend),
        scaling_config=ray.train.ScalingConfig(
            num_workers=plan.scaling_workers,
            use_gpu=plan.use_gpu,
            resources_per_worker=plan.resources_per_worker,
        ),
        run_config=ray.train.RunConfig(
            name=train_run_name(run_dir),
            storage_path=str(run_dir),
            callbacks=[MetricsRecorder(run_dir, time.time(), cfg.to_dict(), tracker)],
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.num_to_keep),
        ),
    )
    if marks is not None:
        marks.mark("fit_start")
    try:
        with worker_start_timeout(cfg.worker_start_timeout_s), run_helpers(cluster_is_this_host()):
            trainer.fit()
    except ray.train.TrainingFailedError as err:
        message = failure_message(err, node_memory(run_dir, failed_ranks(err)))
        message += _recovery_hint(cfg, run_dir)
        raise RunFailedError(message) from None


def failed_ranks(error: Exception) -> list[int]:
    return list(getattr(error, "worker_failures", None) or {})


def node_memory(run_dir: Path, ranks: list[int]) -> dict[int, NodeMemory]:
    """What the failed nodes' memory watches last wrote (only a process that died leaves
    one)."""
    seen = {}
    for rank in ranks:
        try:
            memory = NodeMemory.parse(node_memory_path(run_dir, rank).read_text())
        except OSError:
            continue
        if memory is not None:
            seen[rank] = memory
    return seen


def worker_start_timeout(seconds: float | None):
    """Ray Train reads its worker-group start timeout from the environment (and passes it
    on to its controller); set it for this run only."""
    if seconds is None:
        return contextlib.nullcontext()
    return scoped_env({WORKER_START_TIMEOUT_ENV: str(seconds)})


def _recovery_hint(cfg: ExperimentConfig, run_dir: Path) -> str:
    """How often each node failed, and where the run can be resumed from."""
    records = read_metrics(run_dir)
    counts: dict[str, int] = {}
    for record in records:
        if record.get("kind") == "error":
            for rank in record["ranks"]:
                counts[rank] = counts.get(rank, 0) + 1
    lines = [
        f"\nnode-{rank} failed {n} time(s) (max_failures {cfg.max_failures})"
        for rank, n in sorted(counts.items())
    ]
    saved = [e for e in epoch_lines(records) if e.get("checkpoint")]
    if saved:
        lines.append(
            f"\nlast good checkpoint: epoch {saved[-1]['epoch']} at {saved[-1]['checkpoint']}; "
            f"continue with: raysim run --resume {run_dir}"
        )
    return "".join(lines)


_imports_awaited = False
"""Whether a run in this process has counted the process's start-up in its start-up."""

TRAINING_STACK = (
    "ray.train",
    "ray.train.torch",
    "raysim.record.recorder",
    "raysim.worker.launchers",
)
"""What the driver needs for Ray Train's fit(), imported while the checks run and Ray
starts (the built-in experiment's loop too, where it is the one trained)."""


def run(
    cfg: ExperimentConfig,
    train_fn: Callable[[dict], None] | None = None,
    out: TextIO | None | str = "stdout",
    resume: bool = False,
) -> RunResult:
    """Run one experiment on the simulated cluster; progress and summary go to `out`
    (default: sys.stdout as it is when the run starts; None: nothing is printed).

    train_fn: the user's per-node training function, called with the config as a dict
    (default: the built-in ResNet18 experiment). resume: continue the run in cfg's run
    directory from its latest checkpoint.
    """
    global _imports_awaited
    marks = StartupMarks()
    if not _imports_awaited:  # a later run in this process (a sweep, a notebook) did not
        _imports_awaited = True
        if not ran_other_programs():  # else the start is a shell's: timed from here
            marks.mark("process_start", process_start_unix())
    marks.mark("run_start")
    if out == "stdout":
        out = sys.stdout  # looked up now: a redirected or captured stdout is honoured
    tracker = tracker_for(cfg.tracking)  # the mlflow extra is checked before Ray starts
    imports = ImportsAhead(TRAINING_STACK + (("raysim.builtin.loop",) if train_fn is None else ()))
    try:
        with joined(cfg.address, cfg.verbose), tracked(tracker):
            return _run(cfg, train_fn, out, resume, marks, imports, tracker)
    finally:
        imports.wait()  # a failed check leaves no import running behind the error


def check_state_fits(cfg: ExperimentConfig, plan: ResourcePlan) -> None:
    """The built-in model's training state must fit the budget it is held to."""
    if plan.device_kind == "cpu" and not cfg.enforce_memory:
        return
    state = get_strategy(cfg.strategy).training_state(
        parameter_count(cfg.num_classes), ADAM_MOMENTS, "Adam", cfg.num_nodes
    )
    problem = state_floor_problem(
        state,
        plan.memory_budget_bytes,
        plan.memory_fraction,
        plan.device_memory_bytes,
    )
    if problem is not None:
        raise PlanError([problem])


def checks_before_ray(
    cfg: ExperimentConfig, plan: ResourcePlan, builtin: bool, imports: ImportsAhead
) -> None:
    """What would fail every node alike, told before Ray starts."""
    if builtin:
        check_state_fits(cfg, plan)
        check_weights(cfg.weights_path)
    if decodes_images(cfg):  # decoding imports torch: not while the thread does
        imports.wait()
    check_data(cfg, raysim_home() / "cache")


def _run(
    cfg: ExperimentConfig,
    train_fn: Callable[[dict], None] | None,
    out: TextIO | None,
    resume: bool,
    marks: StartupMarks,
    imports: ImportsAhead,
    tracker: MlflowRun | None = None,
) -> RunResult:
    hw = hardware_for(cfg)
    plan = make_plan(cfg, hw)
    checks_before_ray(cfg, plan, train_fn is None, imports)
    run_dir = (
        (Path(cfg.run_dir) / str(cfg.run_name)).resolve()
        if resume
        else create_run_dir(cfg.run_dir, cfg.run_name, cfg.num_nodes)
    )
    (run_dir / CONFIG_FILE).write_text(dump_yaml(cfg))
    if tracker is not None:  # the MLflow run opens before Ray starts, and imports MLflow's
        imports.wait()  # modules: not while the thread imports
        tracker.start(cfg.to_dict(), run_dir, resume)
    if out is not None:
        print(
            f"raysim: {cfg.num_nodes} simulated node(s) on {plan.device_kind} "
            f"({plan.backend}), global batch {cfg.global_batch_size}, run dir {run_dir}",
            file=out,
            flush=True,
        )
    wall_start = time.perf_counter()
    failure: RunFailedError | None = None
    try:
        with (
            SimCluster(plan, cfg.address, cfg.verbose, dashboard_port_of(cfg)) as cluster,
            ProgressFollower(run_dir / METRICS_FILE, cfg.num_epochs, out) as follower,
        ):
            marks.mark("cluster_ready")
            if out is not None and cluster.dashboard_url:
                print(dashboard_banner(cluster.dashboard_url, cluster.metrics_url), file=out)
            if out is not None and out.isatty():
                follower.board = make_board()
            node_loss = (
                NodeLossWatcher(
                    run_dir,
                    cluster.remove_node,
                    lambda fault, log: follower.tell_before_failure(node_lost_line(fault, log)),
                )
                if plan.multi_node
                else contextlib.nullcontext()
            )
            imports.wait()
            with node_loss:
                _train(cfg, plan, run_dir, train_fn, follower.board, tracker, marks)
    except RunFailedError as err:
        failure = err
    records = read_metrics(run_dir)
    summary = summarize(records, marks.marks)
    summary.update(
        wall_time_s=time.perf_counter() - wall_start,
        environment=environment_facts(hw, plan),
        config=cfg.to_dict(),
    )
    if failure is not None:
        summary.update(status="failed", error=str(failure))
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    if out is not None:
        print("\n" + summary_table(summary, run_dir), file=out, flush=True)
    if failure is not None:
        raise failure
    return RunResult(run_dir=run_dir, config=cfg, epochs=epoch_lines(records), summary=summary)
