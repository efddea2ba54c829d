"""From a config and the detected hardware: what each simulated node gets.

Pure functions, so every decision (packing, backend, threads, budget) is tested
without starting Ray or touching a device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from raysim.config.schema import ExperimentConfig
from raysim.errors import ConfigError
from raysim.plan.host_memory import host_memory_problem
from raysim.units import GIB

DEVICE_RESOURCE = "raysim_device"
"""Logical Ray resource standing for the one simulated device on CPU hosts."""
DEVICE_UNITS = 10_000
"""The simulated device in units, because Ray node resources must be whole numbers."""
NODE_RESOURCE = "raysim_node"
"""multi_node: one unit on each simulated node's Ray node, one per worker: one worker a node."""
NODE_LABEL = "raysim-node"
"""multi_node: the Ray node label naming the simulated node (node-0, node-1, ...)."""
WHOLE_MODEL_BUCKET_MB = 250.0
"""Above the gradients of ResNet18 (45 MB) and ResNet50 (98 MB): one all-reduce a step."""


class PlanError(ConfigError):
    """The config cannot be placed on this hardware (e.g. impossible packing)."""


@dataclass(frozen=True)
class Hardware:
    num_cpus: int
    num_gpus: int = 0
    gpu_memory_bytes: int = 0
    gpu_name: str = ""
    memory_available_bytes: int | None = None
    """Host memory the run may use before Ray's memory monitor kills workers, where the
    nodes run on this host; None: not checked."""


@dataclass(frozen=True)
class ResourcePlan:
    """Everything Ray and each worker need to know about the placement."""

    num_workers: int
    device_kind: str
    """'cuda' (real GPU share) or 'cpu' (simulated device)."""
    use_gpu: bool
    backend: str
    resources_per_worker: dict[str, float]
    cluster_cpus: int
    cluster_resources: dict[str, float]
    """Custom resources the embedded Ray declares (the simulated device)."""
    torch_threads: int
    memory_fraction: float
    device_memory_bytes: int
    memory_budget_bytes: int
    """Per worker: memory_fraction × device memory (real card or simulated)."""
    topology: str = "single_host"
    min_workers: int | None = None
    """Elastic: the fewest workers the run may go on with; None: fixed num_workers."""
    node_resources: dict[str, float] | None = None
    """multi_node: what each simulated node's Ray node declares (CPU, GPU and custom)."""
    ddp_bucket_mb: float | None = None
    """DDP's gradient bucket size; None: DDP's defaults."""
    host_allreduce: bool = False
    """Try the all-reduce through shared memory (taken if every rank can map every other's
    memory, raysim.worker.strategies.ddp_host_allreduce); False: gloo's, or NCCL's on a GPU."""

    @property
    def ddp_kwargs(self) -> dict[str, float | bool]:
        """For DistributedDataParallel: a chosen bucket size, gradients as views into the
        buckets (no copy between the two); nothing when DDP's defaults apply."""
        if self.ddp_bucket_mb is None:
            return {}
        return {"bucket_cap_mb": self.ddp_bucket_mb, "gradient_as_bucket_view": True}

    @property
    def simulated_device(self) -> bool:
        return self.device_kind == "cpu"

    @property
    def multi_node(self) -> bool:
        return self.topology == "multi_node"

    @property
    def scaling_workers(self) -> int | tuple[int, int]:
        """Ray Train's num_workers: a (min, max) pair makes the run elastic."""
        if self.min_workers is None or self.min_workers >= self.num_workers:
            return self.num_workers
        return (self.min_workers, self.num_workers)


def choose_device(cfg: ExperimentConfig, hw: Hardware) -> str:
    if cfg.device == "cuda" and hw.num_gpus == 0:
        raise PlanError(["device: 'cuda' but no CUDA device is visible; use device: auto or cpu"])
    if cfg.device == "auto":
        return "cuda" if hw.num_gpus > 0 else "cpu"
    return cfg.device


def max_nodes_per_device(share: float) -> int:
    return math.floor(1 / share + 1e-9)


def packing_problems(num_nodes: int, gpu_fraction: float, memory_fraction: float, devices: int):
    """Ray waits forever on a request that cannot fit; say so before Ray starts."""
    problems = []
    per_device = max_nodes_per_device(gpu_fraction)
    if num_nodes > per_device * devices:
        fit = per_device * devices
        problems.append(
            f"impossible packing: {num_nodes} nodes × gpu_fraction {gpu_fraction:.2f} = "
            f"{num_nodes * gpu_fraction:.2f} of {_devices_text(devices)}; at {gpu_fraction:.2f} "
            f"at most {fit} nodes fit: lower num_nodes to {fit} or gpu_fraction to "
            f"{math.floor(devices / num_nodes * 100) / 100:.2f}"
        )
    sharing = min(num_nodes, per_device) if devices > 1 else num_nodes
    if sharing * memory_fraction > 1 + 1e-9:
        fit = max_nodes_per_device(memory_fraction)
        problems.append(
            f"impossible packing: {sharing} nodes × memory_fraction {memory_fraction:.2f} = "
            f"{sharing * memory_fraction:.2f} of one device's memory; at {memory_fraction:.2f} "
            f"at most {fit} nodes fit: lower num_nodes or memory_fraction to "
            f"{math.floor(100 / sharing) / 100:.2f}"
        )
    return problems


def _devices_text(devices: int) -> str:
    return "one device" if devices == 1 else f"{devices} devices"


def ddp_bucket_mb(cfg: ExperimentConfig, device_kind: str) -> float | None:
    """One bucket where the simulated nodes share this host's cores and nothing models the
    wire. DDP's buckets exist to overlap all-reduce with the rest of backward; here the
    all-reduce runs on the same cores as the other nodes' compute, so there is nothing to
    overlap, and each bucket costs another round of gloo thread hand-offs (BENCHMARKS.md).
    With a network or compression hook the buckets stay DDP's, so the modelled wire time
    overlaps backward as on a real cluster."""
    if cfg.ddp_bucket_mb is not None:
        return cfg.ddp_bucket_mb
    if device_kind == "cpu" and cfg.address is None and not models_the_wire(cfg):
        return WHOLE_MODEL_BUCKET_MB
    return None


def host_allreduce(cfg: ExperimentConfig, device_kind: str) -> bool:
    """Shared memory for the gradients where the nodes may share this host: CPU tensors,
    and no modelled link or compression whose hook needs gloo's asynchronous all-reduce
    (it overlaps backward; the shared-memory one runs on the training thread)."""
    return cfg.shared_memory_allreduce and device_kind == "cpu" and not models_the_wire(cfg)


def models_the_wire(cfg: ExperimentConfig) -> bool:
    """Whether DDP needs the emulation hook: a modelled link delay or a real compression."""
    return not cfg.network.is_loopback or cfg.grad_compression is not None


def cpu_share(cluster_cpus: int, num_workers: int) -> float:
    """Ray accepts fractional requests below 1 and whole numbers above it."""
    share = cluster_cpus / num_workers
    return float(math.floor(share)) if share >= 1 else math.floor(share * 10_000) / 10_000


def host_memory_check(cfg: ExperimentConfig, device_kind: str, available: int | None) -> None:
    """Refuse, before Ray starts, nodes that the host's memory cannot hold."""
    if available is None:
        return
    budget = int(cfg.memory_fraction * cfg.device_memory_gb * GIB)
    enforced = device_kind == "cpu" and cfg.enforce_memory
    problem = host_memory_problem(cfg.num_nodes, budget if enforced else None, available)
    if problem:
        raise PlanError([problem])


def make_plan(cfg: ExperimentConfig, hw: Hardware) -> ResourcePlan:
    device_kind = choose_device(cfg, hw)
    if cfg.amp == "fp16" and device_kind != "cuda":
        raise PlanError(["amp: fp16 needs CUDA; on the CPU use amp: bf16"])
    devices = hw.num_gpus if device_kind == "cuda" else 1
    if cfg.address is None:
        problems = packing_problems(cfg.num_nodes, cfg.gpu_fraction, cfg.memory_fraction, devices)
        if problems:
            raise PlanError(problems)
        host_memory_check(cfg, device_kind, hw.memory_available_bytes)
    cluster_cpus = cfg.cpus or hw.num_cpus
    shares_a_device = cfg.num_nodes > 1 and cfg.gpu_fraction < 1
    if device_kind == "cuda":
        device_resource = {"GPU": cfg.gpu_fraction}
        cluster_resources: dict[str, float] = {}
        device_memory = hw.gpu_memory_bytes
    else:
        device_resource = {DEVICE_RESOURCE: float(round(cfg.gpu_fraction * DEVICE_UNITS))}
        cluster_resources = {DEVICE_RESOURCE: float(DEVICE_UNITS)}
        device_memory = int(cfg.device_memory_gb * GIB)
    cpu = cpu_share(cluster_cpus, cfg.num_nodes)
    node_resources = None
    if cfg.topology == "multi_node":
        # Ray node resources are whole numbers: each simulated node gets at least one CPU
        # (a logical one; the threads below still divide the real cores) and one node unit.
        cpu = max(1.0, cpu)
        node_resources = {"CPU": cpu, NODE_RESOURCE: 1.0}
        if device_kind == "cuda":
            node_resources["GPU"] = 1.0  # the one real card, seen by every simulated node
        else:
            node_resources[DEVICE_RESOURCE] = device_resource[DEVICE_RESOURCE]
        device_resource = {**device_resource, NODE_RESOURCE: 1.0}
        cluster_resources = {}
    return ResourcePlan(
        num_workers=cfg.num_nodes,
        device_kind=device_kind,
        use_gpu=device_kind == "cuda",
        # NCCL refuses two ranks on one GPU; gloo handles CUDA tensors too.
        backend="nccl" if device_kind == "cuda" and not shares_a_device else "gloo",
        resources_per_worker={"CPU": cpu, **device_resource},
        cluster_cpus=cluster_cpus,
        cluster_resources=cluster_resources,
        torch_threads=cfg.torch_threads or max(1, cluster_cpus // cfg.num_nodes),
        memory_fraction=cfg.memory_fraction,
        device_memory_bytes=device_memory,
        memory_budget_bytes=int(cfg.memory_fraction * device_memory),
        topology=cfg.topology,
        min_workers=cfg.min_nodes,
        node_resources=node_resources,
        ddp_bucket_mb=ddp_bucket_mb(cfg, device_kind),
        host_allreduce=host_allreduce(cfg, device_kind),
    )
