"""What one all-reduce of n bytes costs on a cluster of machines with several GPUs each.

The cost model is NCCL's own (src/graph/tuning.cc, Simple protocol), fed with achieved
link bandwidths (raysim.projection.links) instead of NCCL's detected ones:

- ring: one ring through every GPU; its bandwidth is the slowest hop's. Inside one machine
  that is the intra link; across machines it is the machine's NICs, shared by its GPUs
  (k NICs carry k rings side by side), unless the intra link is slower still.
  time = latency + n · 2(p−1)/p / busbw, latency = 8.4 us + one hop latency per step
  (2(p−1) steps, 2(N−1) of them on the network), ×1.9 across machines (NCCL's "plateau").
- tree: NCCL's double binary tree across machines, a chain inside each; it carries the
  message up and down (algorithm bandwidth half of 0.9 × busbw, capped at 80 GB/s busbw
  beyond two machines, 110 up to two) and is slower than modelled for medium messages
  (NCCL's treeCorrectionFactor); latency 2((G−1) intra + log2 N network) chunk latencies.
- nccl: whichever of ring and tree the model predicts faster, per message size, as NCCL
  chooses (NCCL_ALGO unset).
- hierarchical (Horovod's hierarchical all-reduce, NCCL's CollNet in spirit): reduce-scatter
  inside each machine, a ring all-reduce of each GPU's 1/G share across machines (the G
  shares share the machine's NICs), all-gather inside.

An all-gather or a reduce-scatter (FSDP's) is one half of the ring all-reduce: p−1 ring
steps, each GPU moving (p−1)/p of the whole tensor through the slowest hop (NCCL runs both
as rings, src/enqueue.cc; nccl-tests' PERFORMANCE.md: their bus bandwidth is
algbw × (p−1)/p, so the same achieved busbw prices them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from raysim.errors import ConfigError
from raysim.projection.links import Link

ALGORITHMS = ("nccl", "ring", "tree", "hierarchical")

RING_BASE_US = 8.4
"""NCCL's base latency of a ring all-reduce (tuning.cc baseLat, Simple)."""
RING_PLATEAU = 1.9
"""NCCL's factor on ring latency across machines for large messages (tuning.cc)."""
TREE_CHUNK_US = {"intra": 28.0, "network": 50.0}
"""NCCL's tree chunk latency per level (tuning.cc hwLat, tree, Simple)."""
TREE_BW_SHARE = 0.9
TREE_MAX_BUSBW_GBS = {"two_machines": 110.0, "more": 80.0}
TREE_CORRECTION = (
    0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.8, 0.7, 0.6, 0.6,
    0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.6, 0.6, 0.7, 0.8, 0.9,
)  # fmt: skip
"""NCCL's treeCorrectionFactor (Simple) for 64 B × 2^k messages, k = 0..21; 1.0 beyond."""


@dataclass(frozen=True)
class Topology:
    """Machines of `gpus_per_node` GPUs joined by `network`; GPUs inside one joined by `intra`."""

    nodes: int
    gpus_per_node: int
    intra: Link
    network: Link
    nics_per_node: int = 1
    algorithm: str = "nccl"

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    def problems(self) -> list[str]:
        problems = []
        if self.nodes < 1:
            problems.append(f"--nodes: {self.nodes!r} must be at least 1 machine")
        if self.gpus_per_node < 1:
            problems.append(f"--gpus-per-node: {self.gpus_per_node!r} must be at least 1")
        if self.nics_per_node < 1:
            problems.append(f"nics_per_node: {self.nics_per_node!r} must be at least 1")
        if self.algorithm not in ALGORITHMS:
            problems.append(f"algorithm: {self.algorithm!r} is not one of {', '.join(ALGORITHMS)}")
        return problems


def _check(nbytes: int, topo: Topology) -> None:
    problems = topo.problems()
    if nbytes < 0:
        problems.append(f"nbytes: {nbytes!r} must be >= 0")
    if problems:
        raise ConfigError(problems)


def bottleneck_bytes_per_s(topo: Topology) -> float:
    """The ring's slowest hop: the intra link in one machine, else the machine's NICs
    (shared by its GPUs' rings) unless the intra link is slower."""
    if topo.nodes == 1:
        return topo.intra.bytes_per_second
    return min(topo.intra.bytes_per_second, topo.nics_per_node * topo.network.bytes_per_second)


def ring_seconds(nbytes: int, topo: Topology) -> float:
    p, n = topo.gpus, topo.nodes
    if p == 1:
        return 0.0
    steps, network_steps = 2 * (p - 1), 2 * (n - 1)
    latency_us = RING_BASE_US + (steps - network_steps) * topo.intra.latency_us
    latency_us += network_steps * topo.network.latency_us
    if n > 1:
        latency_us *= RING_PLATEAU
    return latency_us * 1e-6 + nbytes * steps / p / bottleneck_bytes_per_s(topo)


def tree_seconds(nbytes: int, topo: Topology) -> float:
    p, n, g = topo.gpus, topo.nodes, topo.gpus_per_node
    if p == 1:
        return 0.0
    cap = TREE_MAX_BUSBW_GBS["two_machines" if n <= 2 else "more"] * 1e9
    algorithm_bw = 0.5 * min(TREE_BW_SHARE * bottleneck_bytes_per_s(topo), cap)
    k = int(math.log2(max(nbytes, 64) // 64))
    if k < len(TREE_CORRECTION):
        algorithm_bw *= TREE_CORRECTION[k]
    levels = math.floor(math.log2(n)) if n > 1 else 0
    latency_us = 2 * ((g - 1) * TREE_CHUNK_US["intra"] + levels * TREE_CHUNK_US["network"])
    return latency_us * 1e-6 + nbytes / algorithm_bw


def hierarchical_seconds(nbytes: int, topo: Topology) -> float:
    g, n = topo.gpus_per_node, topo.nodes
    inside = Topology(1, g, topo.intra, topo.network)
    if n == 1:
        return ring_seconds(nbytes, inside)
    # Reduce-scatter and all-gather inside are each half a ring all-reduce's traffic.
    intra = ring_seconds(nbytes, inside) if g > 1 else 0.0
    nic_bw = topo.nics_per_node * topo.network.bytes_per_second
    # Each of the G GPUs all-reduces its n/G share across machines; together through the NICs.
    across_us = (RING_BASE_US + 2 * (n - 1) * topo.network.latency_us) * RING_PLATEAU
    across = across_us * 1e-6 + nbytes * 2 * (n - 1) / n / nic_bw
    return intra + across


def gather_seconds(nbytes: int, topo: Topology) -> float:
    """One ring all-gather (or reduce-scatter) whose whole tensor is nbytes: p−1 steps,
    (p−1)/p of the bytes through the slowest hop (the module's docstring)."""
    _check(nbytes, topo)
    p, n = topo.gpus, topo.nodes
    if p == 1:
        return 0.0
    latency_us = RING_BASE_US + (p - n) * topo.intra.latency_us + (n - 1) * topo.network.latency_us
    if n > 1:
        latency_us *= RING_PLATEAU
    return latency_us * 1e-6 + nbytes * (p - 1) / p / bottleneck_bytes_per_s(topo)


def allreduce_cost(nbytes: int, topo: Topology) -> tuple[float, str]:
    """(seconds, the algorithm that takes them) for one all-reduce of nbytes."""
    _check(nbytes, topo)
    if topo.gpus == 1:
        return 0.0, "none"
    if topo.algorithm == "hierarchical":
        return hierarchical_seconds(nbytes, topo), "hierarchical"
    ring, tree = ring_seconds(nbytes, topo), tree_seconds(nbytes, topo)
    if topo.algorithm == "ring" or (topo.algorithm == "nccl" and ring <= tree):
        return ring, "ring"
    return tree, "tree"
