"""Emulated interconnect: what an all-reduce would cost on a real cluster's network.

Simulated nodes on one machine exchange gradients through shared memory, so their
all-reduce is far faster than any real link. A DDP communication hook runs the real
all-reduce (the gradients stay correct) and then holds each bucket back until the
time an alpha-beta model gives for the chosen network, so the measured step time
includes a realistic communication cost.

The model: a message of n bytes over p nodes with per-message latency α (seconds) and
link bandwidth B (bytes/s) costs

- ring:  2(p−1)·α + 2·(p−1)/p · n/B   (reduce-scatter then all-gather; bandwidth optimal)
- tree:  2·⌈log2 p⌉·α + 2·⌈log2 p⌉ · n/B   (simple binary tree: reduce to the root, then
  broadcast, whole message per level; latency optimal, bandwidth poor)

Bandwidth is per direction per node, in Gbit/s as vendors quote links.
"""

from __future__ import annotations

import difflib
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from raysim.config import ConfigError

ALGORITHMS = ("ring", "tree")
COMPRESSIONS = ("fp16", "bf16", "powersgd")
"""Gradient compressions the byte model knows; None (or 'none') sends fp32 as is."""
HOOK_COMPRESSIONS = (None, "fp16", "bf16")
"""Compressions the emulation hook can run for real (torch's stock hooks)."""
POWERSGD_RATIO = 1 / 16
"""Default share of the bytes PowerSGD sends, see compressed_bytes."""
DDP_BUCKET_CAP_MB = 25
"""DistributedDataParallel's default bucket cap (MiB)."""
DDP_FIRST_BUCKET_MB = 1
"""DDP's default cap for the first bucket (MiB), so the first all-reduce starts early."""
MIB = 2**20


@dataclass(frozen=True)
class NetworkSpec:
    """A link between nodes: bandwidth per direction, per-message latency, all-reduce algorithm."""

    name: str
    bandwidth_gbps: float
    """Gbit/s per direction per node (10GbE is 10)."""
    latency_us: float
    """Per-message latency α in microseconds."""
    algorithm: str = "ring"
    """'ring' or 'tree', see allreduce_seconds."""

    @property
    def bytes_per_second(self) -> float:
        return self.bandwidth_gbps * 1e9 / 8

    @property
    def is_loopback(self) -> bool:
        """No modelled cost: the simulated nodes' own shared-memory speed is kept."""
        return math.isinf(self.bandwidth_gbps) and self.latency_us == 0

    def describe(self) -> str:
        if self.is_loopback:
            return f"{self.name} (no added delay)"
        return (
            f"{self.name} ({self.bandwidth_gbps:g} Gbit/s = {self.bytes_per_second / 1e9:g} GB/s, "
            f"{self.latency_us:g} us, {self.algorithm})"
        )


PRESETS: dict[str, NetworkSpec] = {
    # Nothing added: the simulated nodes' real shared-memory all-reduce.
    "loopback": NetworkSpec("loopback", math.inf, 0.0, "ring"),
    # PCIe 4.0 x16: 32 GB/s per direction.
    "pcie4": NetworkSpec("pcie4", 256.0, 1.5, "ring"),
    # NVLink 3 (A100): 600 GB/s per GPU counts both directions, so 300 GB/s each way.
    "nvlink": NetworkSpec("nvlink", 2400.0, 1.0, "ring"),
    # NVLink 4 (H100): 900 GB/s per GPU both directions, 450 GB/s each way.
    "nvlink4": NetworkSpec("nvlink4", 3600.0, 1.0, "ring"),
    # 1 GbE: 0.125 GB/s; TCP latency through the kernel stack.
    "1gbe": NetworkSpec("1gbe", 1.0, 50.0, "ring"),
    # 10 GbE: 1.25 GB/s.
    "10gbe": NetworkSpec("10gbe", 10.0, 20.0, "ring"),
    # 25 GbE: 3.1 GB/s.
    "25gbe": NetworkSpec("25gbe", 25.0, 15.0, "ring"),
    # 100 GbE: 12.5 GB/s.
    "100gbe": NetworkSpec("100gbe", 100.0, 10.0, "ring"),
    # InfiniBand HDR: 200 Gbit/s = 25 GB/s, RDMA latency about 1-2 us.
    "ib_hdr": NetworkSpec("ib_hdr", 200.0, 1.5, "ring"),
    # InfiniBand NDR: 400 Gbit/s = 50 GB/s.
    "ib_ndr": NetworkSpec("ib_ndr", 400.0, 1.5, "ring"),
}

_DICT_KEYS = ("name", "bandwidth_gbps", "latency_us", "algorithm")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _preset_problem(value: str) -> str:
    names = list(PRESETS)
    close = difflib.get_close_matches(value.lower(), names, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return (
        f"network: {value!r} is not a preset; {hint}use one of {', '.join(names)}, "
        "or a mapping {bandwidth_gbps: ..., latency_us: ..., algorithm: ring|tree}"
    )


def _dict_problems(value: dict[Any, Any]) -> list[str]:
    problems = []
    for key in value:
        if key not in _DICT_KEYS:
            close = difflib.get_close_matches(str(key), _DICT_KEYS, n=1, cutoff=0.6)
            hint = (
                f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(_DICT_KEYS)}"
            )
            problems.append(f"network: unknown key {key!r}: {hint}")
    bandwidth = value.get("bandwidth_gbps")
    if bandwidth is None:
        problems.append(
            "network: bandwidth_gbps is missing; give the link speed, e.g. 10 for 10GbE"
        )
    elif not _number(bandwidth) or not bandwidth > 0:
        problems.append(
            f"network.bandwidth_gbps: {bandwidth!r} must be a positive number of Gbit/s, e.g. 10"
        )
    latency = value.get("latency_us", 0.0)
    if not _number(latency) or not latency >= 0 or math.isinf(latency):
        problems.append(
            f"network.latency_us: {latency!r} must be a finite number of microseconds >= 0, e.g. 20"
        )
    algorithm = value.get("algorithm", "ring")
    if algorithm not in ALGORITHMS:
        problems.append(f"network.algorithm: {algorithm!r} is not one of {', '.join(ALGORITHMS)}")
    name = value.get("name", "custom")
    if not isinstance(name, str) or not name:
        problems.append(f"network.name: {name!r} must be a non-empty string")
    return problems


def parse_network(value: str | dict[str, Any] | NetworkSpec | None) -> NetworkSpec:
    """None (loopback), a preset name, or {bandwidth_gbps, latency_us, algorithm, name}."""
    if value is None:
        return PRESETS["loopback"]
    if isinstance(value, NetworkSpec):
        return value
    if isinstance(value, str):
        spec = PRESETS.get(value.strip().lower())
        if spec is None:
            raise ConfigError([_preset_problem(value)])
        return spec
    if isinstance(value, dict):
        problems = _dict_problems(value)
        if problems:
            raise ConfigError(problems)
        return NetworkSpec(
            name=value.get("name", "custom"),
            bandwidth_gbps=float(value["bandwidth_gbps"]),
            latency_us=float(value.get("latency_us", 0.0)),
            algorithm=value.get("algorithm", "ring"),
        )
    raise ConfigError(
        [
            f"network: {value!r} is a {type(value).__name__}; use a preset name "
            f"({', '.join(PRESETS)}) or a mapping {{bandwidth_gbps, latency_us, algorithm}}"
        ]
    )


def parse_compression(value: str | None) -> str | None:
    """None or 'none' (fp32 as is), 'fp16', 'bf16' or 'powersgd'."""
    if value is None or value == "none":
        return None
    if isinstance(value, str) and value.lower() in COMPRESSIONS:
        return value.lower()
    close = difflib.get_close_matches(str(value).lower(), COMPRESSIONS, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigError(
        [f"compression: {value!r} is not known; {hint}use none, {', '.join(COMPRESSIONS)}"]
    )


def allreduce_seconds(nbytes: int, nodes: int, spec: NetworkSpec) -> float:
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


def compressed_bytes(
    nbytes: int, compression: str | None, *, powersgd_ratio: float = POWERSGD_RATIO
) -> int:
    """Bytes on the wire for nbytes of fp32 gradients.

    fp16/bf16 halve them. PowerSGD sends two rank-r factors, r·(n+m) values, for each n×m
    weight instead of n·m, but leaves biases and norms whole and needs extra all-reduces;
    the byte model stands for all that with one ratio (default 1/16, deliberately
    conservative: low ranks on large layers send far less).
    """
    compression = parse_compression(compression)
    if compression is None:
        return int(nbytes)
    if compression in ("fp16", "bf16"):
        return int(nbytes) // 2
    if not 0 < powersgd_ratio <= 1:
        raise ValueError(f"powersgd_ratio: {powersgd_ratio!r} must be in (0, 1]")
    return math.ceil(nbytes * powersgd_ratio)


def needs_hook(spec: NetworkSpec, compression: str | None = None) -> bool:
    """Whether DDP needs the emulation hook: a modelled delay or a real compression."""
    return not spec.is_loopback or parse_compression(compression) is not None


def gradient_bytes(model: Any) -> int:
    """Bytes of one full gradient: every parameter that requires grad."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def bucket_sizes(model: Any, bucket_cap_mb: float | None = None) -> list[int]:
    """Approximate DDP's gradient buckets in bytes, in the order their all-reduces start.

    Mirrors DDP after its first iteration: parameters in reverse definition order (about
    the order backward produces their gradients), a bucket closes once it reaches its cap;
    with the default cap (None) the first bucket is capped at 1 MiB and the rest at
    25 MiB, with an explicit bucket_cap_mb every bucket uses it, as DDP does.
    """
    cap = (bucket_cap_mb if bucket_cap_mb is not None else DDP_BUCKET_CAP_MB) * MIB
    first_cap = DDP_FIRST_BUCKET_MB * MIB if bucket_cap_mb is None else cap
    params = [p for p in model.parameters() if p.requires_grad]
    open_buckets: dict[tuple[Any, Any], int] = {}
    limits: dict[tuple[Any, Any], float] = {}
    sizes: list[int] = []
    for param in reversed(params):
        key = (param.dtype, param.device)
        size = open_buckets.get(key, 0) + param.numel() * param.element_size()
        if size >= limits.get(key, first_cap):
            sizes.append(size)
            limits[key] = cap
            size = 0
        open_buckets[key] = size
    sizes.extend(size for size in open_buckets.values() if size > 0)
    return sizes


@dataclass
class CommStats:
    """Communication figures the hook accumulates; take() reads and resets them.

    Per bucket: modelled seconds on the emulated link, real seconds (hook call to real
    all-reduce done) and the delay the emulation added beyond the real all-reduce, counted
    once where buckets wait at the same time, so it is wall time the link added.
    """

    buckets: int = 0
    comm_bytes: int = 0
    modelled_comm_s: float = 0.0
    real_comm_s: float = 0.0
    added_delay_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, nbytes: int, modelled_s: float, real_s: float, added_s: float) -> None:
        # Hook callbacks run on the process group's threads, not the training thread.
        with self._lock:
            self.buckets += 1
            self.comm_bytes += nbytes
            self.modelled_comm_s += modelled_s
            self.real_comm_s += real_s
            self.added_delay_s += added_s

    def take(self) -> dict[str, float | int]:
        """Snapshot since the last take (per step or per epoch), then start again from zero."""
        with self._lock:
            snapshot = {
                "buckets": self.buckets,
                "comm_bytes": self.comm_bytes,
                "modelled_comm_s": self.modelled_comm_s,
                "real_comm_s": self.real_comm_s,
                "added_delay_s": self.added_delay_s,
            }
            self.buckets = self.comm_bytes = 0
            self.modelled_comm_s = self.real_comm_s = self.added_delay_s = 0.0
        return snapshot


@dataclass
class EmulationState:
    """The hook's state: what to model, where to record, and when the link is next free."""

    spec: NetworkSpec
    nodes: int
    stats: CommStats
    compression: str | None = None
    process_group: Any = None
    """None: the default process group."""
    link_free_at: float = 0.0
    """perf_counter time the modelled link finishes its last bucket (buckets queue on it)."""


def _real_hook(compression: str | None):
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    return {
        None: default_hooks.allreduce_hook,
        "fp16": default_hooks.fp16_compress_hook,
        "bf16": default_hooks.bf16_compress_hook,
    }[compression]


def _emulation_hook(state: EmulationState, bucket):
    # No annotations on purpose: DDP rejects a hook whose bucket annotation is a string.
    t0 = time.perf_counter()
    buffer = bucket.buffer()
    nbytes = compressed_bytes(buffer.numel() * buffer.element_size(), state.compression)
    modelled = allreduce_seconds(nbytes, state.nodes, state.spec)
    # Buckets share one modelled link: one starts when both it and the link are ready.
    previous = state.link_free_at
    deadline = max(t0, previous) + modelled
    state.link_free_at = deadline
    real_future = _real_hook(state.compression)(state.process_group, bucket)

    def hold_until_modelled(future):
        value = future.value()
        done = time.perf_counter()
        delay = max(0.0, deadline - done)
        # Count a wait once where it overlaps the previous bucket's (the link was busy).
        state.stats.record(nbytes, modelled, done - t0, max(0.0, deadline - max(done, previous)))
        if delay > 0:
            time.sleep(delay)
        return value

    return real_future.then(hold_until_modelled)


def make_emulation_hook(
    spec: NetworkSpec,
    world_size: int,
    stats: CommStats,
    compression: str | None = None,
    *,
    process_group: Any = None,
) -> tuple[EmulationState, Any]:
    """(state, hook) for ddp_model.register_comm_hook(state, hook).

    The hook runs the real all-reduce (torch's allreduce_hook, or its fp16/bf16 compress
    hook), then completes the bucket's future no earlier than the modelled time for the
    bucket's bytes over world_size nodes on spec, queued behind earlier buckets on the
    same modelled link. Real time (hook call to real all-reduce done, which includes
    waiting for the process group's threads), modelled time and the added sleep go to
    stats.
    """
    compression = parse_compression(compression)
    if compression not in HOOK_COMPRESSIONS:
        raise ConfigError(
            [
                f"compression: {compression!r} is only modelled (projection), not run; "
                "the emulation hook runs none, fp16 or bf16"
            ]
        )
    if world_size < 1:
        raise ValueError(f"world_size: {world_size!r} must be at least 1")
    state = EmulationState(spec, world_size, stats, compression, process_group)
    return state, _emulation_hook
