"""Pure decisions for this run from its config and the hardware: placement, backend,
threads, budgets and the memory floor. What a real cluster would cost is raysim.projection."""

from raysim.plan.resources import (
    DEVICE_RESOURCE,
    DEVICE_UNITS,
    NODE_LABEL,
    Hardware,
    PlanError,
    ResourcePlan,
    make_plan,
    max_nodes_per_device,
)

__all__ = [
    "DEVICE_RESOURCE",
    "DEVICE_UNITS",
    "NODE_LABEL",
    "Hardware",
    "PlanError",
    "ResourcePlan",
    "make_plan",
    "max_nodes_per_device",
]
