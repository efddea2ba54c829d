"""What a simulated node and the run around it cost on the host, as bench_scale measured.

Kept equal to benchmarks/results/bench_scale.json by a test (tests/local_ray/test_host_memory.py):
rerun the bench and copy its `constants` here when start-up or memory changes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HostCosts:
    fixed_bytes: int
    """The driver, Ray's processes and its other actors (PSS), the largest over N."""
    worker_pss_bytes: int
    """One training worker's PSS at its peak, the largest over N (training memory included)."""
    worker_training_bytes: int
    """The training memory inside that PSS (the built-in's, charged to its budget)."""
    worker_group_per_node_s: float
    """Ray Train's controller, worker group and process group, seconds per node: the
    largest stage ÷ N measured, so the line N × it lies above every measurement (a fitted
    line's slope went negative on a loaded host, where the smallest N started slowest)."""


MEASURED = HostCosts(
    fixed_bytes=1_281_000_000,
    worker_pss_bytes=878_000_000,
    worker_training_bytes=218_000_000,
    worker_group_per_node_s=3.31,
)
"""benchmarks/results/bench_scale.json (N = 2, 4, 8 at gpu and memory fraction 0.06)."""
