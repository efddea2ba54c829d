"""Every link raysim names, in one table: its line rate and what an all-reduce achieves on it.

A name means one link everywhere: `raysim run --network 10gbe` (the emulation) and
`raysim project --network 10gbe` (the projection) read the same entry, each the figures
its model is built on:

- The emulation holds each all-reduce to the plain alpha-beta time on the link's line
  rate (`line_rate_gbps`: Gbit/s per direction, as vendors quote it) with a per-message
  latency (`message_latency_us`): the ideal link, so that a run's measured waits can be
  checked against that formula (benchmarks/bench_network.py). Only links with a message
  latency are offered there.
- The projection runs NCCL's cost model on what an all-reduce achieves (`busbw_gbs`: the
  bus bandwidth nccl-tests' all_reduce_perf reports for large messages, busbw = size /
  time × 2(n−1)/n, i.e. what a ring gets out of the slowest hop, protocol overheads
  included; GB/s) with NCCL's per-ring-step latency (`latency_us`). Only links with an
  achieved figure are offered there, each named for the side of a machine it joins.

Every achieved figure names the published measurement it comes from; the line rate is
given beside it to show how far below it real all-reduces run. A mapping
{bandwidth_gbps, latency_us, transport} describes any other link to the projection: give
what it achieves (your own all_reduce_perf busbw), in Gbit/s, and whether it is TCP or RDMA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from raysim.errors import ConfigError, did_you_mean, is_number

INTRA, NETWORK = "intra", "network"
"""A link's place: between the GPUs inside one machine, or between machines."""
TCP, RDMA = "tcp", "rdma"
"""How a link moves bytes: through the host's kernel (TCP) or by the NIC's own DMA."""
TRANSPORTS = (TCP, RDMA)


@dataclass(frozen=True)
class Link:
    """One kind of hop: the projection reads busbw_gbs and latency_us, the emulation
    line_rate_gbps and message_latency_us."""

    name: str
    busbw_gbs: float | None
    """Achieved all-reduce bus bandwidth, GB/s (10^9 bytes), per GPU (intra) or per NIC;
    None: not measured, so the projection does not offer this link."""
    latency_us: float
    """Per ring step on this hop (NCCL's tuning model: hwLat, Simple protocol)."""
    line_rate_gbps: float | None = None
    """Line rate, Gbit/s per direction (10 GbE is 10)."""
    message_latency_us: float | None = None
    """The emulation's per-message latency α; None: the emulation does not offer it."""
    place: str | None = None
    """INTRA or NETWORK (None: a user's own link, or loopback)."""
    source: str = "given by the user"
    transport: str = TCP
    """TCP (the kernel's sockets: NCCL's socket transport, Horovod over TCP) or RDMA
    (InfiniBand, RoCE; and the DMA copies inside a machine): the projection's contention
    with backward differs by it (raysim.projection.step_model.CONTENTION)."""

    @property
    def bytes_per_second(self) -> float:
        if self.busbw_gbs is None:
            raise ValueError(f"{self.name} has no achieved bandwidth to project with")
        return self.busbw_gbs * 1e9

    def describe(self) -> str:
        line = f", line rate {self.line_rate_gbps / 8:g} GB/s" if self.line_rate_gbps else ""
        return f"{self.name} ({self.busbw_gbs:g} GB/s achieved{line}, {self.latency_us:g} us)"


# NCCL's own per-step latencies (src/graph/tuning.cc, hwLat, ring, Simple protocol):
# NVLink 3.4 us, PCIe 5.7 us, network 9.6 us. The emulation's message latencies are a
# whole message's on an idle link: about 1 us over NVLink, 1.5 us over PCIe and RDMA,
# 10-50 us through the kernel's TCP stack on Ethernet.
_NVLINK_US, _PCIE_US, _NET_US = 3.4, 5.7, 9.6

LINKS: dict[str, Link] = {
    link.name: link
    for link in (
        # Nothing added: the simulated nodes' real shared-memory all-reduce (emulation only).
        Link("loopback", None, 0.0, math.inf, 0.0, None,
             "no link: the simulated nodes' own shared-memory speed"),
        Link("pcie3", 12.0, _PCIE_US, 126.0, None, INTRA,
             "PCIe Gen3 x16: NCCL's own model, PCI_BW 12.0 (NVIDIA/nccl src/graph/topo.h); "
             "no clean published Gen3 busbw found", RDMA),
        # PCIe 4.0 x16: 32 GB/s per direction (31.5 after 128b/130b encoding).
        Link("pcie4", 20.7, _PCIE_US, 256.0, 1.5, INTRA,
             "8x L40S on PCIe Gen4: flat ring over all 8 GPUs 20.75 GB/s "
             "(NVIDIA engineer, flashinfer-ai/flashinfer#4870)", RDMA),
        Link("pcie5", 28.0, _PCIE_US, 504.0, None, INTRA,
             "8x RTX 5090 on PCIe Gen5: busbw 28 GB/s (NVIDIA/nccl#1639)", RDMA),
        Link("nvlink2", 120.0, _NVLINK_US, 1200.0, None, INTRA,
             "8x V100 (NVLink2, DGX-1): no published busbw found; NCCL's own model, 6 links "
             "x SM70_NVLINK_BW 20 GB/s (NVIDIA/nccl src/graph/topo.h)", RDMA),
        # NVLink 3 (A100): 600 GB/s per GPU counts both directions, so 300 GB/s each way.
        Link("nvlink", 200.0, _NVLINK_US, 2400.0, 1.0, INTRA,
             "8x A100 NVSwitch all_reduce_perf busbw ~200-208 GB/s up to 1 GB "
             "(NVIDIA/nccl-tests#149, #178)", RDMA),
        # NVLink 4 (H100): 900 GB/s per GPU both directions, 450 GB/s each way.
        Link("nvlink4", 370.0, _NVLINK_US, 3600.0, 1.0, INTRA,
             "8x H100: 'NCCL can get an effective NVLink bandwidth of 370GB/s' with "
             "NCCL_ALGO=RING (sjeaugey, NVIDIA/nccl-tests#212)", RDMA),
        Link("1gbe", 0.068, _NET_US, 1.0, 50.0, NETWORK,
             "derived: 25 GbE's measured 54 % of line rate over NCCL sockets applied to 1 GbE "
             "(no 1 GbE measurement found)"),
        Link("10gbe", 0.68, _NET_US, 10.0, 20.0, NETWORK,
             "derived: 25 GbE's measured 54 % of line rate over NCCL sockets applied to 10 GbE "
             "(no 10 GbE measurement found)"),
        Link("25gbe", 1.7, _NET_US, 25.0, 15.0, NETWORK,
             "25 Gb/s Ethernet, NCCL sockets (TCP), 2 nodes x 4 GPUs: busbw 'maxed out at "
             "1.7GBps' (NVIDIA/nccl-tests#83)"),
        Link("roce100", 9.4, _NET_US, 100.0, None, NETWORK,
             "100 Gb/s RoCE: ~600 Gb/s over 8 NICs, 'roughly matching our expectation' "
             "(kwen2501, NVIDIA/nccl#495)", RDMA),
        Link("100gbe", 5.0, _NET_US, 100.0, 10.0, NETWORK,
             "100 Gb/s Ethernet, NCCL sockets (TCP): busbw 4.5-5.2 GB/s at 8-16 MB "
             "(NVIDIA/nccl#450)"),
        Link("ib_edr", 12.2, _NET_US, 100.0, None, NETWORK,
             "EDR 100 Gb/s, 4 nodes x 8 V100: '12.2 GB/s ... is as good as you can get' "
             "(NVIDIA/nccl-tests#29); 12 GB/s per 100G NIC (sjeaugey, nccl-tests#119)", RDMA),
        Link("ib_hdr", 24.0, _NET_US, 200.0, 1.5, NETWORK,
             "HDR 200 Gb/s: '24GB/s is the peak performance per 200G NIC' "
             "(sjeaugey, NVIDIA/nccl-tests#119; ~24 GB/s measured in NVIDIA/nccl#412)", RDMA),
        Link("ib_ndr", 46.0, _NET_US, 400.0, 1.5, NETWORK,
             "NDR 400 Gb/s: 'you should see 46-48GB/s per NIC' (AddyLaddy, "
             "NVIDIA/nccl-tests#290)", RDMA),
        Link("roce25", 2.35, _NET_US, 25.0, None, NETWORK,
             "derived: 100 Gb/s RoCE's measured 75 % of line rate (roce100) applied to 25 Gb/s "
             "RoCE (no 25 Gb/s RDMA busbw found); Horovod's 2017 cluster", RDMA),
        Link("40gbe", 2.7, _NET_US, 40.0, None, NETWORK,
             "derived: 25 GbE's measured 54 % of line rate over NCCL sockets applied to 40 GbE "
             "(no 40 GbE measurement found); Horovod's 2017 64-GPU cluster"),
    )
}  # fmt: skip


def _projected(place: str) -> dict[str, Link]:
    return {
        name: link
        for name, link in LINKS.items()
        if link.place == place and link.busbw_gbs is not None
    }


INTRA_LINKS = _projected(INTRA)
"""The links the projection offers inside a machine (--intra)."""
NETWORK_LINKS = _projected(NETWORK)
"""The links the projection offers between machines (--network)."""
EMULATED_LINKS = {name: link for name, link in LINKS.items() if link.message_latency_us is not None}
"""The links the emulation offers (`network:`, raysim run --network)."""

_PLACES = {INTRA: "inside a machine (intra)", NETWORK: "between machines (network)"}


def _name_problem(value: str, flag: str, presets: dict[str, Link]) -> str:
    link = LINKS.get(value.strip().lower())
    if link is None:
        why = f"is not a known link; {did_you_mean(value, presets)}"
    elif link.busbw_gbs is None:
        why = "is the emulation's alone (raysim run): no achieved all-reduce bandwidth is known; "
    else:
        why = f"is a link {_PLACES[str(link.place)]}; "
    return (
        f"{flag}: {value!r} {why}use one of {', '.join(presets)} "
        "or a mapping {bandwidth_gbps, latency_us}"
    )


_LINK_KEYS = ("name", "bandwidth_gbps", "latency_us", "transport")


def parse_link(value: str | dict[str, Any] | Link, flag: str, presets: dict[str, Link]) -> Link:
    """A preset's name, or {bandwidth_gbps (achieved, Gbit/s), latency_us, transport (tcp,
    the default, or rdma)}; `flag` names the option in errors (--intra, --network)."""
    if isinstance(value, Link):
        return value
    if isinstance(value, str):
        link = presets.get(value.strip().lower())
        if link is None:
            raise ConfigError([_name_problem(value, flag, presets)])
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
    transport = value.get("transport", TCP)
    if transport not in TRANSPORTS:
        problems.append(f"{flag}.transport: {transport!r} must be one of {', '.join(TRANSPORTS)}")
    if problems:
        raise ConfigError(problems)
    return Link(str(value.get("name", "custom")), bandwidth / 8, float(latency),
                transport=transport)  # fmt: skip
