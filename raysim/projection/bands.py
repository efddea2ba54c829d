"""How far the projection was off on published points like a given cluster: its error bands.

A regime is how the machines talk (one machine alone, or the network's transport: TCP or
RDMA) and how many GPUs train. Each band is the range of the leave-one-series-out errors
(projected − published efficiency, in points) of the published points in that regime, of
PyTorch's (DDP, apex, Megatron-LM: the step raysim projects) where it has OWN_POINTS,
else of every framework's (Horovod's among them, whose errors run larger: README), as
benchmarks/bench_projection.py last measured them (benchmarks/results/
projection_validation.json, which a test keeps this table equal to). A cluster larger than
any checked, or a regime with no published point, has no band: the projection says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from raysim.projection.collectives import Topology

OWN_POINTS = 3
"""A regime's band is of PyTorch's points where it has at least this many (one or two
errors make no range), else of every framework's."""
SCALES = ((16, "up to 16 GPUs"), (128, "17-128 GPUs"), (512, "129-512 GPUs"))
"""Upper bounds of the scale classes; beyond the last, nothing was checked."""
ONE_MACHINE = "one machine"


def regime(nodes: int, gpus: int, transport: str) -> str | None:
    """'rdma, 17-128 GPUs'-like name of a cluster's regime; None beyond every scale checked."""
    scale = next((name for bound, name in SCALES if gpus <= bound), None)
    if scale is None:
        return None
    return f"{ONE_MACHINE if nodes == 1 else transport}, {scale}"


@dataclass(frozen=True)
class Band:
    """The signed errors (points of efficiency) seen in one regime."""

    low: float
    high: float
    points: int
    frameworks: str = "pytorch"
    """Whose points: "pytorch" (PyTorch's alone) or "any" (every framework's: fewer than
    OWN_POINTS of PyTorch's in the regime)."""


BANDS: dict[str, Band] = {
    "one machine, up to 16 GPUs": Band(-6.9, 9.8, 34),
    "rdma, 129-512 GPUs": Band(-10.1, -0.5, 3, "any"),
    "rdma, 17-128 GPUs": Band(-3.2, 1.9, 9),
    "rdma, up to 16 GPUs": Band(-6.3, 0.8, 13),
    "tcp, 17-128 GPUs": Band(-7.8, 11.3, 5, "any"),
    "tcp, up to 16 GPUs": Band(-7.3, 3.5, 4, "any"),
}
"""Regime -> band, copied from the kept validation result (see the module's docstring)."""


FSDP_BAND = Band(-4.2, 6.5, 6)
"""The FSDP projection's errors on published FSDP points (benchmarks/bench_projection_fsdp.py,
benchmarks/results/projection_fsdp_validation.json: 1 to 128 H100/H200 GPUs, RDMA), one
band for them all: too few points to split by regime."""
FSDP_CHECKED_GPUS = 128
"""The most GPUs a published FSDP point had: beyond it the FSDP projection was not checked."""


def band_for(topology: Topology, strategy: str = "ddp") -> tuple[str | None, Band | None]:
    """(regime, its band): band None when nothing like `topology` was checked."""
    if strategy == "fsdp":
        if topology.gpus > FSDP_CHECKED_GPUS:
            return None, None
        return "fsdp, up to 128 GPUs", FSDP_BAND
    name = regime(topology.nodes, topology.gpus, topology.network.transport)
    return name, BANDS.get(name) if name else None


def efficiency_range(efficiency: float, band: Band) -> tuple[float, float]:
    """What the published efficiency was, given the projection's and the errors seen:
    published = projected − error, for error within [low, high]."""
    return efficiency - band.high / 100, efficiency - band.low / 100
