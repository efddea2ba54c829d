"""A run's projection onto real clusters, and the projection's tables.

From a run directory (`raysim project RUN`, compare/sweep --target): the run's own model
facts and measured step make the workload that raysim.projection.step_model prices on
raysim.projection.collectives' NCCL cost model with calibrated links; every input is
labelled with where it came from. The tables render either model's rows.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from typing import Any

from raysim.projection.bands import OWN_POINTS, band_for, efficiency_range
from raysim.projection.collectives import Topology
from raysim.projection.comm_model import compressed_bytes
from raysim.projection.cost import Cost, cost_of
from raysim.projection.fsdp_step import FsdpWorkload
from raysim.projection.links import RDMA
from raysim.projection.step_model import (
    BACKWARD_TO_FORWARD,
    CONTENTION,
    STRAGGLER_SPREAD,
    TORCH_DDP_OVERHEAD_S_PER_GB,
    ProjectedStep,
    Workload,
    assumed_backward_share,
    bytes_ready_fraction,
    project_step,
    regrid_ready_fraction,
    slowest_of,
)
from raysim.projection.target import Target
from raysim.report.runs import ReportError, RunRecord

_COLUMNS = (
    ("nodes", "{:d}", lambda r: r.nodes),
    ("global batch", "{:d}", lambda r: r.global_batch),
    ("compute ms", "{:.1f}", lambda r: r.compute_s * 1e3),
    ("comm ms", "{:.1f}", lambda r: r.comm_s * 1e3),
    ("step ms", "{:.1f}", lambda r: r.step_s_no_overlap * 1e3),
    ("step ms overlap", "{:.1f}", lambda r: r.step_s_overlap * 1e3),
    ("samples/s", "{:.1f}", lambda r: r.samples_per_s),
    ("efficiency", "{:.1%}", lambda r: r.efficiency),
    ("eff. no overlap", "{:.1%}", lambda r: r.efficiency_no_overlap),
)


def format_table(rows: Sequence[ProjectedStep], title: str | None = None) -> str:
    """Plain-text table, one line per node count; numbers right-aligned."""
    return _format(rows, _COLUMNS, title)


def _format(rows: Sequence[Any], columns: tuple, title: str | None) -> str:
    header = [name for name, _, _ in columns]
    body = [[fmt.format(get(row)) for _, fmt, get in columns] for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(header, *body, strict=True)]
    lines = [title] if title else []
    lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in body)
    return "\n".join(lines)


def measured_compute_s(run: RunRecord) -> float:
    """Compute per step: the measured step less what the emulated network added to it
    (median over the ranks' epochs after the first, which includes warm-up)."""
    measured = [r for r in run.ranks if "step_time_s" in r]
    later = [r for r in measured if r["epoch"] > 1] or measured
    if not later:
        raise ReportError(
            f"{run.run_dir} has no measured step (no step_time_s in metrics.jsonl): the run "
            "finished no step, or its function did not call raysim.worker.prepare"
        )
    return statistics.median(
        r["step_time_s"] - r.get("added_comm_delay_s_per_step", 0.0) for r in later
    )


def run_buckets(run: RunRecord) -> list[int]:
    """The run's own model's gradient buckets on a real cluster: DDP's default layout, or
    the run's explicit bucket size as it ran (the plan's one bucket is for nodes sharing
    one host's cores)."""
    model = run.summary.get("model")
    if not model:
        raise ReportError(
            f"{run.run_dir} has no model facts (summary.json has no 'model': the run is older "
            "than raysim's model facts, finished no step, or did not call "
            "raysim.worker.prepare); run it again to project it"
        )
    if run.config.get("ddp_bucket_mb") is not None:
        return model["ddp_buckets_bytes"]
    return model["default_buckets_bytes"]


def samples_per_step(run: RunRecord) -> int:
    """What one node trains on per optimizer step, as measured (the function may not use
    the config's batch_size, or may accumulate)."""
    measured = [r for r in run.ranks if r.get("optimizer_steps")]
    if not measured:
        return run.config["batch_size"]
    return round(statistics.median(r["measured_samples"] / r["optimizer_steps"] for r in measured))


CPU_LABEL = (
    "measured on the simulated CPU device (this host's CPU, shared by the simulated nodes): "
    "not a target GPU's step; give --step-time-ms for one"
)


def run_step_source(run: RunRecord) -> str:
    env = run.summary.get("environment", {})
    if env.get("device_kind") == "cuda":
        return f"measured in {run.name} on {env.get('gpu_name') or 'a CUDA GPU'}"
    return CPU_LABEL


def run_workload(run: RunRecord, step_time_ms: float | None = None) -> Workload:
    """The run's own model facts: DDP's default buckets (what a real cluster runs), when each
    was ready in backward and backward's share of the step, as measured; the step from
    --step-time-ms, else the run's measured compute (labelled with its device)."""
    buckets = run_buckets(run)
    model = run.summary["model"]
    compute = measured_compute_s(run)
    step_s = step_time_ms / 1e3 if step_time_ms is not None else compute
    source = "given: --step-time-ms" if step_time_ms is not None else run_step_source(run)
    measured_ready = model.get("default_bucket_ready_fraction") or []
    if run.config.get("ddp_bucket_mb") is None and len(measured_ready) == len(buckets):
        ready, readiness = tuple(measured_ready), "measured in the run (DDP's default buckets)"
    elif model.get("bucket_ready_fraction") and len(model["bucket_ready_fraction"]) == len(
        model.get("ddp_buckets_bytes", [])
    ):
        ready = regrid_ready_fraction(
            model["ddp_buckets_bytes"], model["bucket_ready_fraction"], buckets
        )
        readiness = "measured in the run (the run's buckets, carried over)"
    else:
        ready, readiness = bytes_ready_fraction(buckets), "assumed: in proportion to bytes"
    backward = model.get("backward_s")
    share = min(backward / compute, 1.0) if backward and compute > 0 else assumed_backward_share()
    gradient_gb = sum(buckets) / 1e9
    return Workload(
        step_s=step_s,
        batch_per_gpu=samples_per_step(run),
        buckets_bytes=tuple(
            compressed_bytes(b, run.config.get("grad_compression")) for b in buckets
        ),
        ready_fraction=ready,
        backward_share=share,
        step_source=source,
        readiness_source=readiness
        + ("" if backward else f"; backward assumed {BACKWARD_TO_FORWARD:g}x forward"),
        sync_overhead_s=TORCH_DDP_OVERHEAD_S_PER_GB * gradient_gb,
    )


_CLUSTER_COLUMNS = (
    ("machines", "{:d}", lambda r: r.nodes),
    ("gpus", "{:d}", lambda r: r.gpus),
    ("global batch", "{:d}", lambda r: r.global_batch),
    ("compute ms", "{:.1f}", lambda r: r.compute_s * 1e3),
    ("comm ms", "{:.1f}", lambda r: r.comm_s * 1e3),
    ("step ms", "{:.1f}", lambda r: r.step_s_overlap * 1e3),
    ("samples/s", "{:.1f}", lambda r: r.samples_per_s),
    ("efficiency", "{:.1%}", lambda r: r.efficiency),
    ("eff. no overlap", "{:.1%}", lambda r: r.efficiency_no_overlap),
    ("all-reduce", "{}", lambda r: r.algorithm),
)


def validated_band(row: ProjectedStep, topology: Topology, strategy: str = "ddp") -> str:
    """The published efficiency the validation allows beside this row's, or why none."""
    sized = dataclasses.replace(topology, nodes=row.nodes)
    regime, band = band_for(sized, strategy)
    if band is None:
        return f"not checked ({regime or 'more GPUs than any published point'})"
    low, high = efficiency_range(row.efficiency, band)
    whose = "" if band.frameworks == "pytorch" else " of any framework"
    return f"{max(low, 0):.0%}-{min(high, 1):.0%} ({regime}, {band.points} pts{whose})"


def format_cluster_table(
    rows: Sequence[ProjectedStep],
    title: str | None = None,
    topology: Topology | None = None,
    strategy: str = "ddp",
) -> str:
    """The cluster rows; with `topology`, each row's validated band (the strategy's check)
    beside its efficiency."""
    if topology is None:
        return _format(rows, _CLUSTER_COLUMNS, title)
    band = ("validated band", "{}", lambda r: validated_band(r, topology, strategy))
    return _format(rows, (*_CLUSTER_COLUMNS[:8], band, *_CLUSTER_COLUMNS[8:]), title)


_COST_COLUMNS = (
    ("gpus", "{:d}", lambda c: c.gpus),
    ("epoch", "{}", lambda c: format_duration(c.epoch_s)),
    ("USD/epoch", "{:,.2f}", lambda c: c.epoch_usd),
    ("to target", "{}", lambda c: format_duration(c.to_target_s)),
    (
        "USD to target",
        "{}",
        lambda c: "-" if c.to_target_usd is None else f"{c.to_target_usd:,.2f}",
    ),
)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def format_cost_table(costs: Sequence[Cost], title: str | None = None) -> str:
    return _format(costs, _COST_COLUMNS, title)


def describe_inputs(work: Workload, topology: Topology) -> list[str]:
    return [
        f"step of one GPU alone: {work.step_s * 1e3:.1f} ms ({work.step_source})",
        f"bucket readiness: {work.readiness_source}; "
        f"backward {work.backward_share:.0%} of the step",
        f"machines of {topology.gpus_per_node} GPU(s), inside: {topology.intra.describe()}",
        f"between machines: {topology.network.describe()}, {topology.nics_per_node} NIC(s) "
        f"per machine shared by its GPUs; all-reduce: {topology.algorithm}",
        f"overlap: backward runs 1/(1 + {CONTENTION[topology.network.transport]:g}) as fast "
        f"while an all-reduce runs beside it between machines ({topology.network.transport}), "
        f"1/(1 + {CONTENTION[RDMA]:g}) inside one; DDP's own "
        f"overhead {work.sync_overhead_s * 1e3:.1f} ms per step; the step waits for the slowest "
        f"GPU, one GPU's compute varying by {STRAGGLER_SPREAD:.1%} (+{slowest_of(8) - 1:.1%} at 8 "
        f"GPUs, +{slowest_of(64) - 1:.1%} at 64); all fitted on published points",
        "validated band: the published efficiency the leave-one-series-out errors of PyTorch's "
        "published points in the same regime allow, or every framework's where it has fewer "
        f"than {OWN_POINTS} (benchmarks/results/projection_validation.json)",
        "projected, not measured: see README 'How far to trust the projection'",
    ]


def describe_fsdp_inputs(work: FsdpWorkload, topology: Topology) -> list[str]:
    gathered = sum(u.params for u in work.units if u.regather)
    return [
        f"step of one GPU alone: {work.step_s * 1e3:.1f} ms ({work.step_source})",
        f"FSDP units: {len(work.units)} ({work.units_source}); per step each GPU gathers "
        f"{sum(u.params for u in work.units):,} parameters for forward and {gathered:,} again "
        "for backward, and reduce-scatters every gradient",
        f"machines of {topology.gpus_per_node} GPU(s), inside: {topology.intra.describe()}",
        f"between machines: {topology.network.describe()}, {topology.nics_per_node} NIC(s) "
        "per machine shared by its GPUs; all-gather and reduce-scatter: rings, one at a time",
        "overlap: the next unit's all-gather beside this unit's compute (FSDP2's prefetch), "
        "its reduce-scatter beside the next unit's backward; compute beside a busy link slowed "
        "by DDP's contention (fitted on DDP points only)",
        "validated band: the published efficiency the errors on published FSDP points allow "
        "(benchmarks/results/projection_fsdp_validation.json)",
        "projected, not measured: see README 'How far to trust the projection'",
    ]


def cluster_rows_json(rows: Sequence[ProjectedStep], work: Workload) -> list[dict]:
    return [
        {**dataclasses.asdict(row), "batch_per_gpu": work.batch_per_gpu,
         "step_source": work.step_source, "readiness_source": work.readiness_source}
        for row in rows
    ]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Pricing:
    """A price per GPU-hour (and where it comes from), and the samples each run took to
    its target accuracy (run name -> samples; None: not reached)."""

    usd_per_gpu_hour: float
    source: str
    samples_to_target: dict[str, int | None]


def _costs(step: ProjectedStep, run: RunRecord, pricing: Pricing) -> dict[str, Any]:
    """The projected row's time and cost per epoch (the run's epoch) and to the run's target."""
    cost = cost_of(step, run.epochs[-1]["train_samples"], pricing.usd_per_gpu_hour,
                   pricing.samples_to_target.get(run.name))  # fmt: skip
    return {"epoch_s": cost.epoch_s, "epoch_usd": cost.epoch_usd,
            "to_target_s": cost.to_target_s, "to_target_usd": cost.to_target_usd}  # fmt: skip


def project_runs(
    runs: Sequence[RunRecord],
    target: Target,
    step_time_ms: float | None = None,
    pricing: Pricing | None = None,
) -> dict[str, Any]:
    """Each run with model facts, projected onto as many machines of `target` as it had
    simulated nodes; plus the curve 1 … the largest node count for the plot. With
    `pricing`, each row's time and cost per epoch and to the accuracy its run reached."""
    rows, skipped, curve = [], [], []
    for run in runs:
        try:
            work = run_workload(run, step_time_ms)
        except ReportError as err:
            skipped.append(f"{run.name}: {err}")
            continue
        step = project_step(work, target.topology(run.nodes))
        alone = work.batch_per_gpu / work.step_s
        rows.append({
            "name": run.name, "machines": run.nodes, "gpus": step.gpus,
            "samples_per_s": step.samples_per_s, "speedup": step.samples_per_s / alone,
            "efficiency": step.efficiency, "step_s": step.step_s_overlap,
            "step_source": work.step_source,
            **(_costs(step, run, pricing) if pricing and run.epochs else {}),
        })  # fmt: skip
        if not curve or run.nodes > curve[-1]["machines"]:
            curve = [
                {"machines": n, "gpus": n * target.gpus_per_node,
                 "samples_per_s": project_step(work, target.topology(n)).samples_per_s,
                 "ideal_samples_per_s": n * target.gpus_per_node * alone}
                for n in range(1, run.nodes + 1)
            ]  # fmt: skip
    priced = (
        {"price": pricing.source, "usd_per_gpu_hour": pricing.usd_per_gpu_hour} if pricing else {}
    )
    return {"target": target.describe(), "rows": rows, "curve": curve, "skipped": skipped,
            **priced}  # fmt: skip
