"""The spine of a run: config → plan → cluster → Ray Train fit → a self-contained run dir.

It is handed what each node runs (a NodeProgram) and holds the run's trackers as a list:
it names neither the built-in experiment nor any tracker."""

from __future__ import annotations

import contextlib
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from raysim.cluster import (
    NodeLossWatcher,
    PreemptionDriver,
    SimCluster,
    dashboard_banner,
    dashboard_port_of,
    hardware_for,
    joined,
    scoped_env,
)
from raysim.cluster.train_helpers import (
    cluster_is_this_host,
    controller_polls,
    lean_torch_trainer,
    preemption_watch,
    run_helpers,
)
from raysim.config import ExperimentConfig, dump_yaml
from raysim.config.script import ScriptSpec, script_spec
from raysim.console import (
    ProgressFollower,
    ScriptOutputFollower,
    hang_line,
    make_board,
    node_lost_line,
    preempt_line,
    summary_table,
)
from raysim.driver_startup import DriverStartup
from raysim.failures import NodeMemory, RunFailedError, failure_message, partition_budget
from raysim.node_program import NodeProgram, node_program, script_program
from raysim.plan import Hardware, ResourcePlan, make_plan
from raysim.plan.controller_poll import controller_poll_s
from raysim.plan.start_timeout import worker_start_timeout_s
from raysim.record.trackers import check_trackers, trackers_for
from raysim.report.faults import fault_entries
from raysim.report.summary import summarize
from raysim.rundir import (
    CONFIG_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    create_run_dir,
    epoch_lines,
    fired_faults,
    node_memory_path,
    read_metrics,
    train_run_name,
    write_json,
)

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


def _trainer(cfg: ExperimentConfig, plan: ResourcePlan, run_dir: Path, program: NodeProgram,
             progress_board: Any):  # fmt: skip
    """Ray Train's trainer of the program on the planned workers, recorded on its
    controller."""
    import ray.train

    from raysim.cluster.torch_backend import LeanTorchConfig
    from raysim.record import MetricsRecorder
    from raysim.worker.launchers import run_node
    from raysim.worker.sealed import Sealed

    recorder = MetricsRecorder(run_dir, time.time(), cfg.to_dict())
    return lean_torch_trainer()(  # without the helper actors raysim does not use
        train_loop_per_worker=run_node,
        train_loop_config={
            "experiment": cfg,
            "plan": plan,
            "run_dir": str(run_dir),
            "launcher": Sealed.of(program.load(), program.name),
            "progress_board": progress_board,
        },  # fmt: skip
        torch_config=LeanTorchConfig(backend=plan.backend),
        scaling_config=ray.train.ScalingConfig(
            num_workers=plan.scaling_workers,
            use_gpu=plan.use_gpu,
            resources_per_worker=plan.resources_per_worker,
        ),
        run_config=ray.train.RunConfig(
            name=train_run_name(run_dir),
            storage_path=str(run_dir),
            callbacks=[recorder, *recorder.controller_callbacks()],
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.num_to_keep),
        ),
    )


def _fit(cfg: ExperimentConfig, plan: ResourcePlan, run_dir: Path, program: NodeProgram,
         progress_board: Any, startup: DriverStartup) -> None:  # fmt: skip
    """Ray Train's fit(); a failed training is one RunFailedError, its nodes' story told."""
    import ray.train

    trainer = _trainer(cfg, plan, run_dir, program, progress_board)
    startup.mark("fit_start")
    try:
        preempts = any(fault.kind == "preempt" for fault in cfg.faults)
        with (
            worker_start_timeout(cfg),
            preemption_watch(preempts),
            controller_polls(controller_poll_s(cfg.num_nodes, preempts)),
            run_helpers(cluster_is_this_host() and not preempts),
        ):
            trainer.fit()
    except ray.train.TrainingFailedError as err:
        memory = node_memory(run_dir, failed_ranks(err))
        partition = partition_budget(
            plan.memory_budget_bytes, plan.memory_fraction, plan.device_memory_bytes
        )
        message = hang_lead(run_dir) + failure_message(err, memory, partition)
        message += _recovery_hint(cfg, run_dir)
        raise RunFailedError(message) from None


def hang_lead(run_dir: Path) -> str:
    """A hang that ended the last worker group leads the story: its nodes' errors are what
    ending them left."""
    errors = [r for r in read_metrics(run_dir) if r.get("kind") == "error"]
    if not errors or "stall" not in errors[-1]:
        return ""
    return hang_line(errors[-1]["stall"]).removeprefix("raysim: ") + "\n"


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


def worker_start_timeout(cfg: ExperimentConfig):
    """Ray Train reads its worker-group start timeout from the environment (and passes it
    on to its controller); set it for this run only, from N unless the user set it or the
    run is elastic."""
    elastic = cfg.min_nodes is not None
    seconds = worker_start_timeout_s(cfg.num_nodes, cfg.worker_start_timeout_s, elastic)
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


def run(
    cfg: ExperimentConfig,
    train_fn: Callable[[dict], None] | None = None,
    out: TextIO | None | str = "stdout",
    resume: bool = False,
    script: Sequence[str] | ScriptSpec | None = None,
) -> RunResult:
    """Run one experiment on the simulated cluster; progress and summary go to `out`
    (default: sys.stdout as it is when the run starts; None: nothing is printed).

    train_fn: the user's per-node training function, called with the config as a dict
    (default: the built-in ResNet18 experiment). resume: continue the run in cfg's run
    directory from its latest checkpoint. script: an unmodified torchrun-style script
    instead, as torchrun reads it (["train.py", "--lr", "0.1"] or ["-m", "pkg.train"]),
    or a ScriptSpec.
    """
    startup = DriverStartup()
    if out == "stdout":
        out = sys.stdout  # looked up now: a redirected or captured stdout is honoured
    if script is not None and train_fn is not None:
        raise ValueError("run: give train_fn or script, not both")
    program = node_program(train_fn) if script is None else script_program(script_spec(script))
    check_trackers(cfg.tracking)  # the mlflow extra is checked before Ray starts
    startup.import_ahead(program.imports)
    try:
        with joined(cfg.address, cfg.verbose):
            return _run(cfg, program, out, resume, startup)
    finally:
        startup.imports_done()  # a failed check leaves no import running behind the error


def _run(
    cfg: ExperimentConfig,
    program: NodeProgram,
    out: TextIO | None,
    resume: bool,
    startup: DriverStartup,
) -> RunResult:
    """The data path: check, plan, start the trackers, then cluster, fit and summarize;
    the trackers end with the outcome, whatever it is."""
    hw = hardware_for(cfg)
    plan = make_plan(cfg, hw)
    program.check(cfg, plan, startup)  # what would fail every node alike, before Ray
    run_dir = _open_run_dir(cfg, resume)
    trackers = trackers_for(cfg.tracking, run_dir, cfg.to_dict())
    if trackers.starts_on_driver():  # a tracker's client imports: not while the thread does
        startup.imports_done()
    with trackers.running(run_dir, resume):
        _announce(out, cfg, plan, run_dir)
        wall_start = time.perf_counter()
        failure = _fit_on_cluster(cfg, plan, program, run_dir, out, startup)
        records = read_metrics(run_dir)
        summary = summarize(records, startup.marks.marks)
        summary.update(
            wall_time_s=time.perf_counter() - wall_start,
            program=program.name,
            environment=environment_facts(hw, plan),
            config=cfg.to_dict(),
            faults=fault_entries(records, fired_faults(run_dir)),
        )
        _write_summary(run_dir, summary, failure, out)
        if failure is not None:
            raise failure
    return RunResult(run_dir=run_dir, config=cfg, epochs=epoch_lines(records), summary=summary)


def _open_run_dir(cfg: ExperimentConfig, resume: bool) -> Path:
    """A new run directory (or a resumed run's own), with the config it runs."""
    run_dir = (
        (Path(cfg.run_dir) / str(cfg.run_name)).resolve()
        if resume
        else create_run_dir(cfg.run_dir, cfg.run_name, cfg.num_nodes)
    )
    (run_dir / CONFIG_FILE).write_text(dump_yaml(cfg))
    return run_dir


def _announce(out: TextIO | None, cfg: ExperimentConfig, plan: ResourcePlan, run_dir: Path):
    if out is not None:
        print(
            f"raysim: {cfg.num_nodes} simulated node(s) on {plan.device_kind} "
            f"({plan.backend}), global batch {cfg.global_batch_size}, run dir {run_dir}",
            file=out,
            flush=True,
        )


def _fit_on_cluster(
    cfg: ExperimentConfig,
    plan: ResourcePlan,
    program: NodeProgram,
    run_dir: Path,
    out: TextIO | None,
    startup: DriverStartup,
) -> RunFailedError | None:
    """Start the simulated cluster, follow metrics.jsonl on the console and fit; a failed
    run is returned, to be summarized before it is raised."""
    try:
        with (
            SimCluster(plan, cfg.address, cfg.verbose, dashboard_port_of(cfg)) as cluster,
            ProgressFollower(
                run_dir / METRICS_FILE, cfg.num_epochs if program.epochs_known else 0, out
            ) as follower,
            _output_follower(program, run_dir, out),
        ):
            startup.mark("cluster_ready")
            if out is not None and cluster.dashboard_url:
                print(dashboard_banner(cluster.dashboard_url, cluster.metrics_url), file=out)
            if out is not None and out.isatty():
                follower.board = make_board()
            node_loss = _node_loss_watch(plan, run_dir, cluster, follower)
            preempt = _preempt_driver(plan, run_dir, cluster, follower)
            startup.imports_done()  # Ray Train's fit() needs the training stack
            with node_loss, preempt:
                _fit(cfg, plan, run_dir, program, follower.board, startup)
    except RunFailedError as err:
        return err
    return None


def _output_follower(program: NodeProgram, run_dir: Path, out: TextIO | None):
    """A script's own output on the console (rank 0's, or every node's)."""
    if not program.console_output:
        return contextlib.nullcontext()
    return ScriptOutputFollower(run_dir, program.console_output == "all", out)


def _node_loss_watch(plan: ResourcePlan, run_dir: Path, cluster: SimCluster, follower: Any):
    """Where nodes are Ray nodes, a node_loss fault removes one (told before the failure)."""
    if not plan.multi_node:
        return contextlib.nullcontext()
    return NodeLossWatcher(
        run_dir,
        cluster.remove_node,
        lambda fault, log: follower.tell_before_failure(node_lost_line(fault, log)),
    )


def _preempt_driver(plan: ResourcePlan, run_dir: Path, cluster: SimCluster, follower: Any):
    """Where nodes are Ray nodes, a preempt fault drains one through Ray Core, and it goes
    at the deadline."""
    if not plan.multi_node:
        return contextlib.nullcontext()

    def drain(rank: int, deadline_unix: float):
        return cluster.preempt(rank, deadline_unix, f"raysim: preempt fault on node-{rank}")

    return PreemptionDriver(
        run_dir,
        drain,
        cluster.reclaim,
        lambda fault, drained: follower.tell_before_failure(
            preempt_line(fault, drained.ray_node_id)
        ),
    )


def _write_summary(
    run_dir: Path, summary: dict[str, Any], failure: RunFailedError | None, out: TextIO | None
) -> None:
    if failure is not None:
        summary.update(status="failed", error=str(failure))
    write_json(run_dir / SUMMARY_FILE, summary)
    if out is not None:
        print("\n" + summary_table(summary, run_dir), file=out, flush=True)
