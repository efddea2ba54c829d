"""A preemption notice as a training function sees it: Ray Train's PreemptionInfo, which its
PreemptionWatcher hands every worker once Ray Core drains a node of the worker group (a
spot instance's reclaim notice; raysim's `preempt` fault drains one the same way)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from raysim.cluster.train_helpers import PREEMPTION_WATCHER_ENV


@dataclass(frozen=True)
class PreemptionNotice:
    deadline_unix: float | None
    """When the drained node goes (None: Ray Core was given no deadline)."""
    ranks: tuple[int, ...]
    """The ranks on the drained node(s)."""
    ray_node_ids: tuple[str, ...]

    @classmethod
    def of(cls, info) -> PreemptionNotice | None:
        """From Ray Train's PreemptionInfo (None: no notice)."""
        if info is None:
            return None
        deadline = info.deadline_ms / 1000 if info.deadline_ms else None
        return cls(deadline, tuple(info.preempted_ranks), tuple(info.preempted_node_ids))

    def seconds_left(self) -> float | None:
        return None if self.deadline_unix is None else self.deadline_unix - time.time()


def watched() -> bool:
    """Whether Ray Train watches this run's nodes for drains: its default; the driver's
    setting reaches every worker, and raysim turns it off only on a one-host cluster that
    no preempt fault drains."""
    return os.environ.get(PREEMPTION_WATCHER_ENV, "1") != "0"


def local_notice() -> PreemptionNotice | None:
    """The notice this worker holds now, without asking its peers (Ray Train's watcher
    tells the workers one by one, so two ranks may differ for a moment)."""
    try:
        from ray.train.v2._internal.execution.context import get_train_context
    except ImportError:  # a Ray Train without preemption
        return None
    try:
        context = get_train_context().preemption_context
    except (AttributeError, RuntimeError):
        return None
    return PreemptionNotice.of(context.preemption_info)


def agreed_notice() -> PreemptionNotice | None:
    """The notice every rank gets at this call alike: Ray Train's get_preemption_info(),
    rank 0's view broadcast to all (a barrier: every rank must call it, as often). Without
    the watcher no notice can come, and no rank waits on the others."""
    if not watched():
        return None
    import ray.train

    return PreemptionNotice.of(ray.train.get_preemption_info())
