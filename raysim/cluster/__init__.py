"""The one place that starts, joins and ends Ray."""

from raysim.cluster.env import ClusterError, check_port_free, free_port, scoped_env
from raysim.cluster.hardware import detect_hardware, hardware_for
from raysim.cluster.join import joined
from raysim.cluster.local import SimCluster, dashboard_banner, dashboard_port_of
from raysim.cluster.node_loss import NodeLossWatcher
from raysim.cluster.preemption import PreemptionDriver

__all__ = [
    "ClusterError",
    "NodeLossWatcher",
    "PreemptionDriver",
    "SimCluster",
    "check_port_free",
    "dashboard_banner",
    "dashboard_port_of",
    "detect_hardware",
    "free_port",
    "hardware_for",
    "joined",
    "scoped_env",
]
