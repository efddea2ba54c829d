"""The `network` and `grad_compression` keys: which link the emulation models.

Presets name real links (bandwidth per direction per node, in Gbit/s as vendors
quote them, and a per-message latency); a mapping describes any other. The cost
model that turns a link into seconds is raysim.projection.comm_model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from raysim.errors import ConfigError, did_you_mean, is_number

ALGORITHMS = ("ring", "tree")
COMPRESSIONS = ("fp16", "bf16")
"""Gradient compressions run by torch's stock DDP hooks; None (or 'none') sends fp32 as is."""


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

    def to_yaml(self) -> str | dict[str, Any]:
        """As the config file writes it: a preset's name, or the mapping."""
        if PRESETS.get(self.name) == self:
            return self.name
        return {"name": self.name, "bandwidth_gbps": self.bandwidth_gbps,
                "latency_us": self.latency_us, "algorithm": self.algorithm}  # fmt: skip

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


def _preset_problem(value: str) -> str:
    return (
        f"network: {value!r} is not a preset; {did_you_mean(value, PRESETS)}use one of "
        f"{', '.join(PRESETS)}, "
        "or a mapping {bandwidth_gbps: ..., latency_us: ..., algorithm: ring|tree}"
    )


def _dict_problems(value: dict[Any, Any]) -> list[str]:
    problems = []
    for key in value:
        if key not in _DICT_KEYS:
            hint = did_you_mean(key, _DICT_KEYS) or f"valid keys: {', '.join(_DICT_KEYS)}"
            problems.append(f"network: unknown key {key!r}: {hint.strip()}")
    bandwidth = value.get("bandwidth_gbps")
    if bandwidth is None:
        problems.append(
            "network: bandwidth_gbps is missing; give the link speed, e.g. 10 for 10GbE"
        )
    elif not is_number(bandwidth) or not bandwidth > 0:
        problems.append(
            f"network.bandwidth_gbps: {bandwidth!r} must be a positive number of Gbit/s, e.g. 10"
        )
    latency = value.get("latency_us", 0.0)
    if not is_number(latency) or not latency >= 0 or math.isinf(latency):
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
    """None or 'none' (fp32 as is), 'fp16' or 'bf16'."""
    if value is None or value == "none":
        return None
    if isinstance(value, str) and value.lower() in COMPRESSIONS:
        return value.lower()
    raise ConfigError(
        [f"grad_compression: {value!r} is not known; {did_you_mean(value, COMPRESSIONS)}use "
         f"none, {', '.join(COMPRESSIONS)}"]
    )  # fmt: skip
