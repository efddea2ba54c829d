"""A real cluster to project runs onto (compare/sweep --target): machines, links, all-reduce."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from raysim.errors import ConfigError, did_you_mean
from raysim.projection.collectives import Topology
from raysim.projection.links import INTRA_LINKS, NETWORK_LINKS, Link, parse_link


@dataclass(frozen=True)
class Target:
    """A real cluster to project runs onto: machines of `gpus_per_node` GPUs."""

    gpus_per_node: int = 8
    intra: Link = INTRA_LINKS["nvlink"]
    network: Link = NETWORK_LINKS["100gbe"]
    nics_per_node: int = 1
    algorithm: str = "nccl"

    def topology(self, nodes: int) -> Topology:
        return Topology(nodes, self.gpus_per_node, self.intra, self.network,
                        self.nics_per_node, self.algorithm)  # fmt: skip

    def describe(self) -> str:
        return (f"machines of {self.gpus_per_node} GPU(s) on {self.intra.name} inside, "
                f"{self.network.name} between them ({self.nics_per_node} NIC(s) each)")  # fmt: skip


TARGET_KEYS = ("gpus_per_node", "intra", "network", "nics_per_node", "algorithm")


def parse_target(text: str) -> Target:
    """'gpus_per_node=8,intra=nvlink,network=100gbe', a YAML mapping, or a YAML file."""
    import yaml

    path = Path(text)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        value = yaml.safe_load(path.read_text())
    elif text.strip().startswith("{"):
        value = yaml.safe_load(text)
    else:
        pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ConfigError([f"--target: {text!r} is not key=value,...; e.g. "
                               "gpus_per_node=8,intra=nvlink,network=100gbe"])  # fmt: skip
        value = {k.strip(): yaml.safe_load(v.strip()) for k, v in pairs}
    if not isinstance(value, dict):
        raise ConfigError([f"--target: {text!r} must be a mapping of {', '.join(TARGET_KEYS)}"])
    problems = [
        f"--target: unknown key {key!r}; {did_you_mean(key, TARGET_KEYS)}valid keys: "
        f"{', '.join(TARGET_KEYS)}"
        for key in value
        if key not in TARGET_KEYS
    ]
    for key in ("gpus_per_node", "nics_per_node"):
        if key in value and not (isinstance(value[key], int) and value[key] >= 1):
            problems.append(f"--target.{key}: {value[key]!r} must be a whole number >= 1")
    if problems:
        raise ConfigError(problems)
    return Target(
        gpus_per_node=value.get("gpus_per_node", 8),
        intra=parse_link(value.get("intra", "nvlink"), "--target.intra", INTRA_LINKS),
        network=parse_link(value.get("network", "100gbe"), "--target.network", NETWORK_LINKS),
        nics_per_node=value.get("nics_per_node", 1),
        algorithm=value.get("algorithm", "nccl"),
    )
