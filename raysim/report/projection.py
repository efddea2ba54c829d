"""Predict DDP step time and scaling at real cluster sizes from one measured step.

Inputs are what one simulated node measures (compute seconds per step: forward,
backward and optimizer) and the model's gradient buckets; the network model is
raysim.plan.comm_model's alpha-beta all-reduce. Assumptions, kept simple on purpose:

- one worker per node, every node as fast as the measured one, and its compute per
  step does not change with N at a fixed per-node batch (weak scaling);
- the all-reduce is ring unless the network says tree; nothing else shares the link;
- without overlap, step = compute + all bucket all-reduces one after another;
- with overlap (what DDP does), backward is the last `backward_share` of the compute
  (forward and optimizer lumped before it; the optimizer really runs after the
  all-reduces, which only moves time, not the total), each bucket is ready once
  backward has produced its bytes (backward time proportional to gradient bytes),
  and buckets all-reduce one at a time on one link, each starting when it is ready
  and the link is free. So compute + last bucket ≤ step ≤ compute + all buckets.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from raysim.config.network import NetworkSpec
from raysim.errors import ConfigError
from raysim.plan.comm_model import allreduce_seconds, compressed_bytes
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


def overlapped_step_seconds(
    compute_s: float, bucket_comm_s: Sequence[float], backward_share: float, ready: Sequence[float]
) -> float:
    """Step time when bucket k's all-reduce may start at ready[k] (share of backward done)."""
    backward_start = compute_s * (1 - backward_share)
    link_free = 0.0
    for comm, share_done in zip(bucket_comm_s, ready, strict=True):
        start = max(backward_start + share_done * compute_s * backward_share, link_free)
        link_free = start + comm
    return max(compute_s, link_free)


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
    """One row per node count; bucket_bytes in DDP order (raysim.plan.comm_model.bucket_sizes)."""
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
    header = [name for name, _, _ in _COLUMNS]
    body = [[fmt.format(get(row)) for _, fmt, get in _COLUMNS] for row in rows]
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
