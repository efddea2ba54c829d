"""How often Ray Train's controller polls its workers, from the number of nodes.

The controller takes the workers' reports, and sees that they finished, only when it polls
them (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, 2 s by default): at 2 s a run waits about two
polls after its last step before fit() returns (3.6 to 4.5 s of an 18 s run at 2 nodes
here). Each poll is one call on every worker, so the interval grows with N to keep the
polls a node's loop pays for as few as Ray's default gives at 32 nodes.
"""

from __future__ import annotations

RAY_DEFAULT_S = 2.0
"""Ray Train's interval when unset: never poll less often than it."""
FASTEST_S = 0.2
"""The shortest interval: a tenth of Ray's."""
WORKER_POLLS_PER_S = 16.0
"""Calls on workers per second at most: 32 nodes at Ray's 2 s."""
PREEMPT_S = 0.5
"""For a run with a preempt fault: a just-in-time checkpoint reported in the notice's last
two seconds still reaches the controller before the deadline ends the worker group."""


def controller_poll_s(num_nodes: int, preempt_injected: bool = False) -> float:
    """The interval for a run of num_nodes: N / WORKER_POLLS_PER_S, within FASTEST_S and
    Ray's default; at most PREEMPT_S where a preempt fault is injected."""
    seconds = min(RAY_DEFAULT_S, max(FASTEST_S, num_nodes / WORKER_POLLS_PER_S))
    return min(seconds, PREEMPT_S) if preempt_injected else seconds
