"""The console's lines: one per epoch, one per failure, recovery or notice."""

from __future__ import annotations

from typing import Any

from raysim.errors import is_number
from raysim.rundir import RAYSIM_KEYS
from raysim.units import MB, figure


def epoch_line(epoch: dict[str, Any], num_epochs: int) -> str:
    of = f"/{num_epochs}" if num_epochs else ""  # 0: a script's, not known ahead
    head = f"epoch {epoch['epoch']:>3}{of}  nodes {epoch['world_size']}  "
    if "test_accuracy" in epoch:  # the built-in experiment
        columns = [
            f"loss {epoch['train_loss']:.4f}  acc {epoch['train_accuracy']:.3f}",
            f"test acc {epoch['test_accuracy']:.3f}  {epoch['epoch_time_s']:.1f} s",
            f"{epoch['samples_per_s']:.0f} samples/s",
            f"peak RSS {epoch['peak_rss_bytes'] / MB:.0f} MB",
        ]
        return head + "  ".join([*columns, *slowest_node(epoch)])
    columns = [*raysim_columns(epoch), *slowest_node(epoch), *own_figures(epoch)[:8]]
    return head + "  ".join(columns)


def slowest_node(epoch: dict[str, Any]) -> list[str]:
    """The node the others waited for (the one that waited least in the all-reduce), and
    whether for its input or its compute: known only where there are peers and the ranks
    measured their waits."""
    rank = epoch.get("slowest_rank")
    if rank is None:
        return []
    cause = epoch.get("slowest_cause")
    return [f"slowest node-{rank}" + (f" ({cause})" if cause else "")]


def raysim_columns(record: dict[str, Any]) -> list[str]:
    """raysim's measurements of any function that used prepare: throughput, step, memory."""
    columns = []
    if "samples_per_s" in record:
        columns.append(f"{record['samples_per_s']:.0f} samples/s")
        columns.append(f"step {figure('step_time_s', record['step_time_s'])}")
    if "memory_peak_bytes" in record and record.get("memory_budget_bytes"):
        columns.append(
            f"memory {record['memory_peak_bytes'] / MB:.0f}/"
            f"{record['memory_budget_bytes'] / MB:.0f} MB"
        )
    return columns


def own_figures(record: dict[str, Any]) -> list[str]:
    """The function's own numeric keys, each with its unit."""
    return [
        f"{key} {figure(key, value)}"
        for key, value in record.items()
        if key not in RAYSIM_KEYS and is_number(value)
    ]


def event_line(record: dict[str, Any]) -> str:
    """A failure of the worker group, the recovery from one, or a notice, as the console
    tells it."""
    if record["kind"] == "notice":
        return f"raysim: note: {record['text']}"
    if record["kind"] == "recovered":
        return (
            f"raysim: recovered: epoch {record['epoch']} reported "
            f"{record['recover_s']:.1f} s after the failure"
        )
    if record.get("preemption"):
        return _preempted_line(record)
    ranks = ", ".join(sorted(record["ranks"], key=int))
    text = f"raysim: the worker group failed (rank {ranks})"
    if record.get("stall"):
        text = hang_line(record["stall"]) + "\n" + text
    if record.get("faults"):
        injected = ", ".join(f"{f['kind']} on node-{f['rank']}" for f in record["faults"])
        text += f": injected {injected}, noticed after {record['detect_s']:.1f} s"
    return text


def _preempted_line(record: dict[str, Any]) -> str:
    """Ray Train's controller waited out a drained node's deadline and restarts the group."""
    preemption = record["preemption"]
    nodes = " and ".join(preemption.get("nodes") or map(str, preemption["ranks"]))
    text = (
        f"raysim: Ray Train restarts the worker group: {nodes} was preempted (its "
        "controller's PreemptingState ended at the deadline)"
    )
    if record.get("faults"):
        text += f"; the notice reached Ray Train {record['detect_s']:.1f} s after the fault"
    return text


def hang_line(stall: dict[str, Any]) -> str:
    """Who stopped entering collectives, which one it did not enter, at which step; and that
    the watch ended the worker group."""
    collective = stall["collective"]
    stopped = " and ".join(node["node"] for node in stall["stopped"])
    where = stall["stopped"][0]
    return (
        f"raysim: hang: {stopped} stopped entering collectives at epoch {where['epoch']}, "
        f"step {where['step']}: it did not enter {collective['kind']} #{collective['seq']} "
        f"({_size(collective['bytes'])}), which {', '.join(stall['waiting'])} waited in "
        f"for {stall['waited_s']:.1f} s (collective_timeout_s {stall['timeout_s']:g}); "
        "raysim ended the worker group"
    )


def _size(nbytes: int) -> str:
    return f"{nbytes / MB:.1f} MB" if nbytes >= MB / 10 else f"{nbytes / 1000:.1f} kB"


def node_lost_line(fault: dict[str, Any], ray_log: str | None) -> str:
    """The driver took a simulated node's Ray node away (node_loss), and where Ray's own
    account of it stays."""
    text = (
        f"raysim: node_loss: node-{fault['rank']}'s Ray node removed at epoch "
        f"{fault['epoch']}, step {fault['step']} (all its processes killed at once)"
    )
    return text + (f"; Ray's own log of it stays in {ray_log}" if ray_log else "")


def preempt_line(fault: dict[str, Any], ray_node_id: str) -> str:
    """The driver had Ray Core drain a simulated node's Ray node for a preemption."""
    return (
        f"raysim: preempt: node-{fault['rank']}'s Ray node {ray_node_id[:8]} drained through "
        f"Ray Core (reason preemption) at epoch {fault['epoch']}, step {fault['step']}, "
        f"{fault['notice_s']:g} s before its deadline; a new Ray node takes its place"
    )
