"""What an all-reduce costs on a modelled link, and how DDP splits the gradients into buckets.

The alpha-beta model: a message of n bytes over p nodes with per-message latency α
(seconds) and link bandwidth B (bytes/s) costs

- ring:  2(p−1)·α + 2·(p−1)/p · n/B   (reduce-scatter then all-gather; bandwidth optimal)
- tree:  2·⌈log2 p⌉·α + 2·⌈log2 p⌉ · n/B   (simple binary tree: reduce to the root, then
  broadcast, whole message per level; latency optimal, bandwidth poor)

Pure functions: the emulation hook, the projection and the tests share them.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from raysim.errors import ConfigError
from raysim.units import MIB

COMPRESSIONS = ("fp16", "bf16")
"""Gradient compressions run by torch's stock DDP hooks: each halves fp32's bytes on the wire."""

DDP_BUCKET_CAP_MB = 25
"""DistributedDataParallel's default bucket cap (MiB)."""
DDP_FIRST_BUCKET_MB = 1
"""DDP's default cap for the first bucket (MiB), so the first all-reduce starts early."""


class AlphaBetaLink(Protocol):
    """What the alpha-beta model reads of a link (raysim.config's NetworkSpec is one)."""

    @property
    def latency_us(self) -> float: ...
    @property
    def bytes_per_second(self) -> float: ...
    @property
    def algorithm(self) -> str: ...
    @property
    def is_loopback(self) -> bool: ...


def allreduce_seconds(nbytes: int, nodes: int, spec: AlphaBetaLink) -> float:
    """Alpha-beta time of one all-reduce of nbytes over nodes (formulas in the module doc)."""
    if nodes < 1:
        raise ValueError(f"nodes: {nodes!r} must be at least 1")
    if nbytes < 0:
        raise ValueError(f"nbytes: {nbytes!r} must be >= 0")
    if nodes == 1 or spec.is_loopback:
        return 0.0
    alpha = spec.latency_us * 1e-6
    beta = 1 / spec.bytes_per_second
    if spec.algorithm == "tree":
        levels = math.ceil(math.log2(nodes))
        return 2 * levels * alpha + 2 * levels * nbytes * beta
    return 2 * (nodes - 1) * alpha + 2 * (nodes - 1) / nodes * nbytes * beta


def compressed_bytes(nbytes: int, compression: str | None) -> int:
    """Bytes on the wire for nbytes of fp32 gradients: fp16 and bf16 halve them."""
    if compression is None or compression == "none":
        return int(nbytes)
    if compression.lower() not in COMPRESSIONS:
        raise ConfigError(
            [f"grad_compression: {compression!r} is not known; use none, {', '.join(COMPRESSIONS)}"]
        )
    return int(nbytes) // 2


def bucket_layout(model: Any, bucket_cap_mb: float | None = None) -> list[list[Any]]:
    """Approximate DDP's gradient buckets, as parameter lists in the order their
    all-reduces start.

    Mirrors DDP after its first iteration: parameters in reverse definition order (about
    the order backward produces their gradients), a bucket closes once it reaches its cap;
    with the default cap (None) the first bucket is capped at 1 MiB and the rest at
    25 MiB, with an explicit bucket_cap_mb every bucket uses it, as DDP does.
    """
    cap = (bucket_cap_mb if bucket_cap_mb is not None else DDP_BUCKET_CAP_MB) * MIB
    first_cap = DDP_FIRST_BUCKET_MB * MIB if bucket_cap_mb is None else cap
    params = [p for p in model.parameters() if p.requires_grad]
    open_buckets: dict[tuple[Any, Any], list[Any]] = {}
    limits: dict[tuple[Any, Any], float] = {}
    layout: list[list[Any]] = []
    for param in reversed(params):
        key = (param.dtype, param.device)
        bucket = [*open_buckets.get(key, []), param]
        if _nbytes(bucket) >= limits.get(key, first_cap):
            layout.append(bucket)
            limits[key] = cap
            bucket = []
        open_buckets[key] = bucket
    layout.extend(bucket for bucket in open_buckets.values() if bucket)
    return layout


def _nbytes(params: list[Any]) -> int:
    return sum(p.numel() * p.element_size() for p in params)


def bucket_sizes(model: Any, bucket_cap_mb: float | None = None) -> list[int]:
    """Bytes of each bucket of bucket_layout."""
    return [_nbytes(bucket) for bucket in bucket_layout(model, bucket_cap_mb)]
