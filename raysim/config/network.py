"""The `network` and `grad_compression` keys: which link the emulation models.

Presets are the links of raysim.projection.links' one table that state a per-message
latency, read at their line rate (Gbit/s per direction per node, as vendors quote it):
the same names `raysim project` reads, there at what an all-reduce achieves. A mapping
describes any other link. The cost model that turns a link into seconds is
raysim.projection.comm_model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from raysim.errors import ConfigError, did_you_mean, is_number
from raysim.projection.comm_model import COMPRESSIONS
from raysim.projection.links import EMULATED_LINKS, LINKS

ALGORITHMS = ("ring", "tree")


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
    name: NetworkSpec(name, float(link.line_rate_gbps or 0), float(link.message_latency_us or 0))
    for name, link in EMULATED_LINKS.items()
}
"""The emulation's links: each one's line rate and per-message latency, a ring all-reduce."""

_DICT_KEYS = ("name", "bandwidth_gbps", "latency_us", "algorithm")


def _preset_problem(value: str) -> str:
    if value.strip().lower() in LINKS:
        why = "is a link only `raysim project` models (no per-message latency stated); "
    else:
        why = f"is not a preset; {did_you_mean(value, PRESETS)}"
    return (
        f"network: {value!r} {why}use one of "
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
