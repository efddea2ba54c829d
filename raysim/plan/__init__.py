"""Pure decisions from a config and the hardware: placement, backend, threads, budgets."""

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
