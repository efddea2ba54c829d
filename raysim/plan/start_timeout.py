"""How long Ray Train may take to start the worker group, from the number of nodes.

Ray Train's default (60 s) is one figure for any N, but its controller, worker group and
process group take longer the more workers start at once on the host: past about 28 nodes
here the default would time out runs that would have started.
"""

from __future__ import annotations

from raysim.plan.host_costs import MEASURED, HostCosts

RAY_DEFAULT_TIMEOUT_S = 60.0
"""RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S when unset: never go below it."""
MARGIN = 3.0
"""Times the measured stage: a host busier than the bench's still starts in time."""


def worker_start_timeout_s(
    num_nodes: int, user_set: float | None, elastic: bool = False, costs: HostCosts = MEASURED
) -> float:
    """The user's worker_start_timeout_s where set, else a margin over the measured
    start-up of N nodes, never below Ray's default. Elastic (min_nodes): Ray's default,
    because there it is also how long a restart waits for a lost node before going on."""
    if user_set is not None:
        return user_set
    if elastic:
        return RAY_DEFAULT_TIMEOUT_S
    predicted = num_nodes * costs.worker_group_per_node_s
    return max(RAY_DEFAULT_TIMEOUT_S, MARGIN * predicted)
