"""The emulation's own flat model: one link, alpha-beta all-reduces, one node per GPU.

benchmarks/bench_network.py checks it against emulated runs: backward is the last
`backward_share` of compute, a bucket is ready once backward has produced its bytes,
buckets go one at a time on one link. So compute + last bucket ≤ step ≤ compute + all.
"""

from __future__ import annotations

from collections.abc import Sequence

from raysim.errors import ConfigError
from raysim.projection.comm_model import AlphaBetaLink, allreduce_seconds, compressed_bytes
from raysim.projection.step_model import (
    ProjectedStep,
    assumed_backward_share,
    bytes_ready_fraction,
    overlapped_step_seconds,
    projected_step,
)

DEFAULT_NODES = tuple(2**k for k in range(11))
"""1, 2, 4, ..., 1024."""


def _problems(
    compute_s: float, bucket_bytes: Sequence[int], batch: int, nodes: Sequence[int], share: float
) -> list[str]:
    problems = []
    if not compute_s > 0:
        problems.append(f"compute_s: {compute_s!r} must be > 0; measure a step first")
    if any(b < 0 for b in bucket_bytes):
        problems.append(f"bucket_bytes: {list(bucket_bytes)!r} has a negative size")
    if batch < 1:
        problems.append(f"batch_per_node: {batch!r} must be at least 1")
    if not nodes or any(n < 1 for n in nodes):
        problems.append(f"nodes: {list(nodes)!r} must be node counts of at least 1, e.g. 1,2,4")
    if not 0 < share <= 1:
        problems.append(f"backward_share: {share!r} must be in (0, 1], e.g. 2/3")
    return problems


def project(
    compute_s: float,
    bucket_bytes: Sequence[int],
    batch_per_node: int,
    spec: AlphaBetaLink,
    nodes: Sequence[int] = DEFAULT_NODES,
    *,
    backward_share: float = assumed_backward_share(),
    compression: str | None = None,
) -> list[ProjectedStep]:
    """One row per node count (a node is one GPU); bucket_bytes in DDP order
    (comm_model.bucket_sizes)."""
    problems = _problems(compute_s, bucket_bytes, batch_per_node, nodes, backward_share)
    if problems:
        raise ConfigError(problems)
    wire = [compressed_bytes(b, compression) for b in bucket_bytes]
    ready = bytes_ready_fraction(bucket_bytes)
    rows = []
    for n in nodes:
        per_bucket = [allreduce_seconds(b, n, spec) for b in wire]
        comm = sum(per_bucket)
        overlap = overlapped_step_seconds(compute_s, per_bucket, backward_share, ready)
        algorithm = "none" if n == 1 or spec.is_loopback else spec.algorithm
        rows.append(projected_step(
            n, n, batch_per_node, compute_s, comm, (overlap, compute_s + comm), algorithm
        ))  # fmt: skip
    return rows
