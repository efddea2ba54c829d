"""Real links as the projection models them: what an all-reduce achieves on them, not line rate.

A link's `busbw_gbs` is the bus bandwidth nccl-tests' all_reduce_perf reports for large
messages on it (busbw = size / time × 2(n−1)/n), i.e. the bandwidth a ring all-reduce
actually gets out of the slowest hop, protocol overheads included. Every preset names the
published measurement it comes from; the line rate is given beside it only to show how far
below it real all-reduces run. A mapping {bandwidth_gbps, latency_us} describes any other
link: give what it achieves (your own all_reduce_perf busbw), in Gbit/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from raysim.errors import ConfigError, did_you_mean, is_number


@dataclass(frozen=True)
class Link:
    """One kind of hop between GPUs: inside a machine (intra) or between machines (network)."""

    name: str
    busbw_gbs: float
    """Achieved all-reduce bus bandwidth, GB/s (10^9 bytes), per GPU (intra) or per NIC."""
    latency_us: float
    """Per ring step on this hop (NCCL's tuning model: hwLat, Simple protocol)."""
    line_rate_gbs: float | None = None
    source: str = "given by the user"

    @property
    def bytes_per_second(self) -> float:
        return self.busbw_gbs * 1e9

    def describe(self) -> str:
        line = f", line rate {self.line_rate_gbs:g} GB/s" if self.line_rate_gbs else ""
        return f"{self.name} ({self.busbw_gbs:g} GB/s achieved{line}, {self.latency_us:g} us)"


# NCCL's own per-step latencies (src/graph/tuning.cc, hwLat, ring, Simple protocol):
# NVLink 3.4 us, PCIe 5.7 us, network 9.6 us.
_NVLINK_US, _PCIE_US, _NET_US = 3.4, 5.7, 9.6

INTRA_LINKS: dict[str, Link] = {
    link.name: link
    for link in (
        Link("nvlink2", 120.0, _NVLINK_US, 150.0,
             "8x V100 (NVLink2, DGX-1): no published busbw found; NCCL's own model, 6 links "
             "x SM70_NVLINK_BW 20 GB/s (NVIDIA/nccl src/graph/topo.h)"),
        Link("nvlink", 200.0, _NVLINK_US, 300.0,
             "8x A100 NVSwitch all_reduce_perf busbw ~200-208 GB/s up to 1 GB "
             "(NVIDIA/nccl-tests#149, #178)"),
        Link("nvlink4", 370.0, _NVLINK_US, 450.0,
             "8x H100: 'NCCL can get an effective NVLink bandwidth of 370GB/s' with "
             "NCCL_ALGO=RING (sjeaugey, NVIDIA/nccl-tests#212)"),
        Link("pcie3", 12.0, _PCIE_US, 15.75,
             "PCIe Gen3 x16: NCCL's own model, PCI_BW 12.0 (NVIDIA/nccl src/graph/topo.h); "
             "no clean published Gen3 busbw found"),
        Link("pcie4", 20.7, _PCIE_US, 31.5,
             "8x L40S on PCIe Gen4: flat ring over all 8 GPUs 20.75 GB/s "
             "(NVIDIA engineer, flashinfer-ai/flashinfer#4870)"),
        Link("pcie5", 28.0, _PCIE_US, 63.0,
             "8x RTX 5090 on PCIe Gen5: busbw 28 GB/s (NVIDIA/nccl#1639)"),
    )
}  # fmt: skip

NETWORK_LINKS: dict[str, Link] = {
    link.name: link
    for link in (
        Link("1gbe", 0.068, _NET_US, 0.125,
             "derived: 25 GbE's measured 54 % of line rate over NCCL sockets applied to 1 GbE "
             "(no 1 GbE measurement found)"),
        Link("10gbe", 0.68, _NET_US, 1.25,
             "derived: 25 GbE's measured 54 % of line rate over NCCL sockets applied to 10 GbE "
             "(no 10 GbE measurement found)"),
        Link("25gbe", 1.7, _NET_US, 3.125,
             "25 Gb/s Ethernet, NCCL sockets (TCP), 2 nodes x 4 GPUs: busbw 'maxed out at "
             "1.7GBps' (NVIDIA/nccl-tests#83)"),
        Link("roce100", 9.4, _NET_US, 12.5,
             "100 Gb/s RoCE: ~600 Gb/s over 8 NICs, 'roughly matching our expectation' "
             "(kwen2501, NVIDIA/nccl#495)"),
        Link("100gbe", 5.0, _NET_US, 12.5,
             "100 Gb/s Ethernet, NCCL sockets (TCP): busbw 4.5-5.2 GB/s at 8-16 MB "
             "(NVIDIA/nccl#450)"),
        Link("ib_edr", 12.2, _NET_US, 12.5,
             "EDR 100 Gb/s, 4 nodes x 8 V100: '12.2 GB/s ... is as good as you can get' "
             "(NVIDIA/nccl-tests#29); 12 GB/s per 100G NIC (sjeaugey, nccl-tests#119)"),
        Link("ib_hdr", 24.0, _NET_US, 25.0,
             "HDR 200 Gb/s: '24GB/s is the peak performance per 200G NIC' "
             "(sjeaugey, NVIDIA/nccl-tests#119; ~24 GB/s measured in NVIDIA/nccl#412)"),
        Link("ib_ndr", 46.0, _NET_US, 50.0,
             "NDR 400 Gb/s: 'you should see 46-48GB/s per NIC' (AddyLaddy, "
             "NVIDIA/nccl-tests#290)"),
    )
}  # fmt: skip

_LINK_KEYS = ("name", "bandwidth_gbps", "latency_us")


def parse_link(value: str | dict[str, Any] | Link, flag: str, presets: dict[str, Link]) -> Link:
    """A preset's name, or {bandwidth_gbps (achieved, Gbit/s), latency_us}; `flag` names the
    option in errors (--intra, --network)."""
    if isinstance(value, Link):
        return value
    if isinstance(value, str):
        link = presets.get(value.strip().lower())
        if link is None:
            raise ConfigError(
                [f"{flag}: {value!r} is not a known link; {did_you_mean(value, presets)}use one "
                 f"of {', '.join(presets)} or a mapping {{bandwidth_gbps, latency_us}}"]
            )  # fmt: skip
        return link
    if not isinstance(value, dict):
        raise ConfigError([f"{flag}: {value!r} must be a link name or a mapping"])
    problems = [
        f"{flag}: unknown key {key!r}; valid keys: {', '.join(_LINK_KEYS)}"
        for key in value
        if key not in _LINK_KEYS
    ]
    bandwidth = value.get("bandwidth_gbps")
    if not is_number(bandwidth) or not 0 < bandwidth < math.inf:
        problems.append(
            f"{flag}.bandwidth_gbps: {bandwidth!r} must be the achieved Gbit/s (> 0), e.g. 80"
        )
    latency = value.get("latency_us", _NET_US)
    if not is_number(latency) or not 0 <= latency < math.inf:
        problems.append(f"{flag}.latency_us: {latency!r} must be microseconds >= 0, e.g. 10")
    if problems:
        raise ConfigError(problems)
    return Link(str(value.get("name", "custom")), bandwidth / 8, float(latency))
