"""Predict DDP step time and scaling at real cluster sizes.

Onto real clusters (`raysim project`, compare/sweep --target): a run's own model facts
and measured step, or a torchvision model's FLOPs and a given step, fed to
raysim.projection.step_model over raysim.projection.collectives' NCCL cost model with calibrated
links; every input is labelled with where it came from.

`project` is the emulation's own flat model (one link, alpha-beta, one node per GPU),
which benchmarks/bench_network.py checks against emulated runs: backward is the last
`backward_share` of compute, a bucket is ready once backward has produced its bytes,
buckets go one at a time on one link. So compute + last bucket ≤ step ≤ compute + all.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raysim.config.network import NetworkSpec
from raysim.errors import ConfigError, did_you_mean
from raysim.projection.collectives import Topology
from raysim.projection.comm_model import allreduce_seconds, compressed_bytes
from raysim.projection.links import INTRA_LINKS, NETWORK_LINKS, Link, parse_link
from raysim.projection.step_model import (
    OVERLAP_CONTENTION,
    TORCH_DDP_OVERHEAD_S_PER_GB,
    ProjectedStep,
    Workload,
    bytes_ready_fraction,
    overlapped_step_seconds,
    project_step,
    regrid_ready_fraction,
)
from raysim.report.runs import ReportError, RunRecord, load_run

DEFAULT_NODES = tuple(2**k for k in range(11))
"""1, 2, 4, ..., 1024."""
BACKWARD_SHARE = 2 / 3
"""Backward is about twice the forward's cost, so about 2/3 of a step's compute."""


@dataclass(frozen=True)
class ProjectionRow:
    """The predicted step at one cluster size."""

    nodes: int
    global_batch: int
    compute_s: float
    comm_s: float
    """All buckets' all-reduces back to back."""
    step_s_no_overlap: float
    step_s_overlap: float
    samples_per_s: float
    """With overlap: nodes × per-node batch / step_s_overlap."""
    samples_per_s_no_overlap: float
    efficiency: float
    """samples/s at N over N × samples/s at one node (with overlap); 1.0 is linear."""
    efficiency_no_overlap: float


def _problems(
    compute_s: float, bucket_bytes: Sequence[int], batch: int, nodes: Sequence[int], share: float
) -> list[str]:
    problems = []
    if not compute_s > 0:
        problems.append(f"compute_s: {compute_s!r} must be > 0; measure a step first")
    if any(b < 0 for b in bucket_bytes):
        problems.append(f"bucket_bytes: {list(bucket_bytes)!r} has a negative size")
    if batch < 1:
        problems.append(f"batch_per_node: {batch!r} must be at least 1")
    if not nodes or any(n < 1 for n in nodes):
        problems.append(f"nodes: {list(nodes)!r} must be node counts of at least 1, e.g. 1,2,4")
    if not 0 < share <= 1:
        problems.append(f"backward_share: {share!r} must be in (0, 1], e.g. 2/3")
    return problems


def ready_shares(bucket_bytes: Sequence[int]) -> list[float]:
    """Share of backward done when each bucket is ready: its cumulative share of the bytes."""
    total = sum(bucket_bytes)
    if total == 0:
        return [1.0] * len(bucket_bytes)
    shares, running = [], 0
    for size in bucket_bytes:
        running += size
        shares.append(running / total)
    return shares


def project(
    compute_s: float,
    bucket_bytes: Sequence[int],
    batch_per_node: int,
    spec: NetworkSpec,
    nodes: Sequence[int] = DEFAULT_NODES,
    *,
    backward_share: float = BACKWARD_SHARE,
    compression: str | None = None,
) -> list[ProjectionRow]:
    """One row per node count; bucket_bytes in DDP order (comm_model.bucket_sizes)."""
    problems = _problems(compute_s, bucket_bytes, batch_per_node, nodes, backward_share)
    if problems:
        raise ConfigError(problems)
    wire = [compressed_bytes(b, compression) for b in bucket_bytes]
    ready = ready_shares(bucket_bytes)
    single_node_rate = batch_per_node / compute_s
    rows = []
    for n in nodes:
        per_bucket = [allreduce_seconds(b, n, spec) for b in wire]
        comm = sum(per_bucket)
        no_overlap = compute_s + comm
        overlap = overlapped_step_seconds(compute_s, per_bucket, backward_share, ready)
        rate, rate_no_overlap = n * batch_per_node / overlap, n * batch_per_node / no_overlap
        rows.append(
            ProjectionRow(
                nodes=n,
                global_batch=n * batch_per_node,
                compute_s=compute_s,
                comm_s=comm,
                step_s_no_overlap=no_overlap,
                step_s_overlap=overlap,
                samples_per_s=rate,
                samples_per_s_no_overlap=rate_no_overlap,
                efficiency=rate / (n * single_node_rate),
                efficiency_no_overlap=rate_no_overlap / (n * single_node_rate),
            )
        )
    return rows


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


def format_table(rows: Sequence[ProjectionRow], title: str | None = None) -> str:
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


def project_run(
    run_dir: str | Path, spec: NetworkSpec, nodes: Sequence[int] = DEFAULT_NODES
) -> tuple[RunRecord, list[ProjectionRow]]:
    """A run projected onto `spec` at each node count, from its own model and step."""
    run = load_run(run_dir)
    buckets = run_buckets(run)
    rows = project(
        measured_compute_s(run), buckets, samples_per_step(run), spec, nodes,
        compression=run.config.get("grad_compression"),
    )  # fmt: skip
    return run, rows


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
    share = min(backward / compute, 1.0) if backward and compute > 0 else BACKWARD_SHARE
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
        readiness_source=readiness + ("" if backward else "; backward share assumed 2/3"),
        sync_overhead_s=TORCH_DDP_OVERHEAD_S_PER_GB * gradient_gb,
    )


def model_workload(name: str, batch: int, step_time_ms: float) -> Workload:
    """A torchvision model without a run: buckets and FLOP-based readiness on the meta device."""
    from raysim.projection.model_profile import torchvision_profile

    profile = torchvision_profile(name)
    return Workload(
        step_s=step_time_ms / 1e3,
        batch_per_gpu=batch,
        buckets_bytes=profile.buckets_bytes,
        ready_fraction=profile.ready_fraction,
        backward_share=profile.backward_share,
        step_source="given: --step-time-ms",
        readiness_source=f"{name}'s FLOPs per layer (meta device), backward = 2x forward",
        sync_overhead_s=TORCH_DDP_OVERHEAD_S_PER_GB * sum(profile.buckets_bytes) / 1e9,
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


def format_cluster_table(rows: Sequence[ProjectedStep], title: str | None = None) -> str:
    return _format(rows, _CLUSTER_COLUMNS, title)


def describe_inputs(work: Workload, topology: Topology) -> list[str]:
    return [
        f"step of one GPU alone: {work.step_s * 1e3:.1f} ms ({work.step_source})",
        f"bucket readiness: {work.readiness_source}; "
        f"backward {work.backward_share:.0%} of the step",
        f"machines of {topology.gpus_per_node} GPU(s), inside: {topology.intra.describe()}",
        f"between machines: {topology.network.describe()}, {topology.nics_per_node} NIC(s) "
        f"per machine shared by its GPUs; all-reduce: {topology.algorithm}",
        f"overlap: backward runs 1/(1 + {OVERLAP_CONTENTION:g}) as fast while an all-reduce "
        f"runs beside it; DDP's own overhead {work.sync_overhead_s * 1e3:.1f} ms per step "
        "(both fitted on published points)",
        "projected, not measured: see README 'How far to trust the projection'",
    ]


def cluster_rows_json(rows: Sequence[ProjectedStep], work: Workload) -> list[dict]:
    return [
        {**dataclasses.asdict(row), "batch_per_gpu": work.batch_per_gpu,
         "step_source": work.step_source, "readiness_source": work.readiness_source}
        for row in rows
    ]  # fmt: skip


@dataclass(frozen=True)
class Target:
    """A real cluster to project runs onto: machines of `gpus_per_node` GPUs."""

    gpus_per_node: int = 8
    intra: Link = INTRA_LINKS["nvlink"]
    network: Link = NETWORK_LINKS["100gbe"]
    nics_per_node: int = 1
    algorithm: str = "nccl"

    def topology(self, nodes: int) -> Topology:
        return Topology(nodes, self.gpus_per_node, self.intra, self.network,
                        self.nics_per_node, self.algorithm)  # fmt: skip

    def describe(self) -> str:
        return (f"machines of {self.gpus_per_node} GPU(s) on {self.intra.name} inside, "
                f"{self.network.name} between them ({self.nics_per_node} NIC(s) each)")  # fmt: skip


TARGET_KEYS = ("gpus_per_node", "intra", "network", "nics_per_node", "algorithm")


def parse_target(text: str) -> Target:
    """'gpus_per_node=8,intra=nvlink,network=100gbe', a YAML mapping, or a YAML file."""
    import yaml

    path = Path(text)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        value = yaml.safe_load(path.read_text())
    elif text.strip().startswith("{"):
        value = yaml.safe_load(text)
    else:
        pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ConfigError([f"--target: {text!r} is not key=value,...; e.g. "
                               "gpus_per_node=8,intra=nvlink,network=100gbe"])  # fmt: skip
        value = {k.strip(): yaml.safe_load(v.strip()) for k, v in pairs}
    if not isinstance(value, dict):
        raise ConfigError([f"--target: {text!r} must be a mapping of {', '.join(TARGET_KEYS)}"])
    problems = [
        f"--target: unknown key {key!r}; {did_you_mean(key, TARGET_KEYS)}valid keys: "
        f"{', '.join(TARGET_KEYS)}"
        for key in value
        if key not in TARGET_KEYS
    ]
    for key in ("gpus_per_node", "nics_per_node"):
        if key in value and not (isinstance(value[key], int) and value[key] >= 1):
            problems.append(f"--target.{key}: {value[key]!r} must be a whole number >= 1")
    if problems:
        raise ConfigError(problems)
    return Target(
        gpus_per_node=value.get("gpus_per_node", 8),
        intra=parse_link(value.get("intra", "nvlink"), "--target.intra", INTRA_LINKS),
        network=parse_link(value.get("network", "100gbe"), "--target.network", NETWORK_LINKS),
        nics_per_node=value.get("nics_per_node", 1),
        algorithm=value.get("algorithm", "nccl"),
    )


def project_runs(
    runs: Sequence[RunRecord], target: Target, step_time_ms: float | None = None
) -> dict[str, Any]:
    """Each run with model facts, projected onto as many machines of `target` as it had
    simulated nodes; plus the curve 1 … the largest node count for the plot."""
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
        })  # fmt: skip
        if not curve or run.nodes > curve[-1]["machines"]:
            curve = [
                {"machines": n, "gpus": n * target.gpus_per_node,
                 "samples_per_s": project_step(work, target.topology(n)).samples_per_s,
                 "ideal_samples_per_s": n * target.gpus_per_node * alone}
                for n in range(1, run.nodes + 1)
            ]  # fmt: skip
    return {"target": target.describe(), "rows": rows, "curve": curve, "skipped": skipped}
