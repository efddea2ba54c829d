"""Whether N simulated nodes fit in the host's memory, decided before Ray starts.

Ray's memory monitor kills a worker once the host is 95 % used, mid-run and far from the
cause; this check refuses the run at the start instead, naming how many nodes fit.
"""

from __future__ import annotations

from raysim.plan.host_costs import MEASURED, HostCosts
from raysim.units import GB

RAY_KILL_FRACTION = 0.95
"""Ray's memory monitor threshold (memory_usage_threshold): the share of the host it lets
the run use before it kills workers."""


def usable_before_ray_kills(available: int | None, total: int | None) -> int | None:
    """MemAvailable less what Ray's monitor keeps free (used = total − available)."""
    if available is None or total is None:
        return None
    return max(0, available - int(total * (1 - RAY_KILL_FRACTION)))


def per_node_bytes(budget_bytes: int | None, costs: HostCosts = MEASURED) -> int:
    """One node: its worker's PSS outside training memory, plus the training memory it may
    use: the whole budget where enforced (it may grow to it), else what the bench's used."""
    outside = costs.worker_pss_bytes - costs.worker_training_bytes
    return outside + (costs.worker_training_bytes if budget_bytes is None else budget_bytes)


def predicted_bytes(num_nodes: int, budget_bytes: int | None, costs: HostCosts = MEASURED) -> int:
    return costs.fixed_bytes + num_nodes * per_node_bytes(budget_bytes, costs)


def nodes_that_fit(available: int, budget_bytes: int | None, costs: HostCosts = MEASURED) -> int:
    usable = available - costs.fixed_bytes
    return max(0, int(usable // per_node_bytes(budget_bytes, costs)))


def host_memory_problem(
    num_nodes: int, budget_bytes: int | None, available: int, costs: HostCosts = MEASURED
) -> str | None:
    """One line if the predicted memory exceeds what the run may use, else None.
    available: host memory usable before Ray's memory monitor kills workers;
    budget_bytes: each node's training memory budget where enforced, else None."""
    fit = nodes_that_fit(available, budget_bytes, costs)
    if fit >= num_nodes:
        return None
    need = predicted_bytes(num_nodes, budget_bytes, costs)
    node = per_node_bytes(budget_bytes, costs)
    budget = "" if budget_bytes is None else f" with its {budget_bytes / GB:.2f} GB budget"
    fixed = costs.fixed_bytes / GB
    return (
        f"host memory: {num_nodes} nodes need about {need / GB:.1f} GB ({fixed:.1f} GB for the "
        f"driver and Ray + {node / GB:.2f} GB a node{budget}) but {available / GB:.1f} "
        f"GB is free below Ray's {RAY_KILL_FRACTION:.0%} kill threshold: at most {fit} nodes "
        "fit; use fewer nodes or a smaller memory_fraction"
    )
