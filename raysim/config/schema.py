"""The experiment's typed configuration: every key, its default, its unit and its range.

The dataclass is the source of truth; YAML is only an input format (raysim.config.loading).
The emulation keys arrive as YAML values and are held parsed: `network` as a NetworkSpec,
`faults` as Faults, `stragglers` as {rank: slowdown}; `to_dict` writes them back as YAML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from raysim.config.faults import Fault
from raysim.config.network import PRESETS, NetworkSpec
from raysim.config.tracking import Tracking

DATASETS = ("digits", "imagefolder", "synthetic")
DEVICES = ("auto", "cpu", "cuda")
AMP_DTYPES = ("bf16", "fp16")
TOPOLOGIES = ("single_host", "multi_node")
STRATEGIES = ("ddp", "zero", "fsdp")
"""Every name raysim.worker.strategies registers."""


@dataclass(kw_only=True)
class ExperimentConfig:
    """One simulated-cluster training experiment (single node is num_nodes=1)."""

    num_nodes: int = 1
    """Simulated nodes: one Ray Train worker each."""
    batch_size: int = 8
    """Batch size per node; the global batch is num_nodes × batch_size."""
    num_epochs: int = 100
    learning_rate: float = 1e-4
    memory_fraction: float = 0.23
    """Share of the device memory each node may use (CUDA cap or simulated budget)."""
    gpu_fraction: float = 0.23
    """Share of the device each node asks Ray for; packs the nodes on one device."""
    device_memory_gb: float = 10.0
    """Simulated device memory on CPU hosts (the reference card: RTX 3080, 10 GB)."""
    enforce_memory: bool = True
    """Enforce memory_fraction (CPU: RLIMIT_DATA over the post-setup baseline)."""
    device: str = "auto"
    """auto (CUDA when present), cpu, or cuda."""
    dataset: str = "digits"
    """digits (bundled, real), imagefolder (data_dir in Stanford Cars layout), synthetic."""
    data_dir: str = "data/car_data"
    image_size: int = 32
    num_classes: int = 10
    """Classes of the synthetic set; digits and imagefolder take theirs from the data."""
    synthetic_samples: int = 2048
    seed: int = 0
    run_dir: str = "runs"
    """Parent folder of run directories."""
    run_name: str | None = None
    """Run directory name under run_dir; default: a timestamped name."""
    num_workers_per_loader: int = 0
    max_steps_per_epoch: int | None = None
    """Cap on training steps per epoch (quick checks); None runs whole epochs."""
    weights_path: str | None = None
    """Local file of ResNet18 weights to start from (never downloaded)."""
    amp: str | None = None
    """Mixed precision: bf16 (CPU and CUDA) or fp16 (CUDA, with a gradient scaler)."""
    channels_last: bool = False
    """Train in the NHWC memory format."""
    accumulate_steps: int = 1
    """Micro-batches per optimizer step (DDP syncs only on the last); the effective batch
    per node is batch_size × accumulate_steps."""
    activation_checkpointing: bool = False
    """Recompute each ResNet stage's activations in backward instead of keeping them."""
    network: NetworkSpec = PRESETS["loopback"]
    """Emulated interconnect: a preset (loopback, 1gbe, 10gbe, 25gbe, 100gbe, pcie4, nvlink,
    nvlink4, ib_hdr, ib_ndr) or {bandwidth_gbps, latency_us, algorithm: ring|tree}."""
    grad_compression: str | None = None
    """Gradient compression on the wire: fp16 or bf16 (torch's DDP hooks)."""
    stragglers: dict[int, float] = field(default_factory=dict)
    """{rank: slowdown}: e.g. {2: 1.5} makes node 2's compute take 1.5 times as long."""
    jitter: float = 0.0
    """Random extra compute time per step, up to this share (0.1 = up to 10%)."""
    checkpoint_every: int = 0
    """Save a checkpoint every this many epochs (0: never); needed to recover mid-run."""
    num_to_keep: int = 2
    """Checkpoints kept in the run directory."""
    max_failures: int = 0
    """Worker-group restarts Ray Train may make after a failure before the run fails."""
    faults: list[Fault] = field(default_factory=list)
    """Injected faults, each {kind: worker_crash|oom|slow_node|node_loss|hang|data_stall|
    preempt, rank, epoch, step, seconds, notice_s}; rank is the simulated node."""
    collective_timeout_s: float | None = None
    """How long a collective may wait for a node that does not enter it: then raysim names
    that node, the collective and the step, and ends the worker group; None: no watch (a
    hung collective waits for the process group's own 30-minute timeout)."""
    topology: str = "single_host"
    """single_host: every simulated node on one Ray node; multi_node: each simulated node is
    a Ray node of its own (a local multi-node Ray cluster), so it can be lost (node_loss)."""
    min_nodes: int | None = None
    """Elastic training: after losing nodes the run goes on with as few as min_nodes
    (Ray Train's ScalingConfig(num_workers=(min_nodes, num_nodes))); None: fixed size."""
    worker_start_timeout_s: float | None = None
    """How long Ray Train waits for a full worker group before an elastic run goes on with
    fewer nodes (RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S; None: Ray's 60 s)."""
    address: str | None = None
    """Existing Ray cluster ('auto' or host:port); None starts an embedded local Ray."""
    dashboard: bool = False
    """Start the embedded Ray with its dashboard (and Train state tracking) on 127.0.0.1."""
    dashboard_port: int = 8265
    """Dashboard port; 0 picks a free one."""
    cpus: int | None = None
    """CPUs the embedded Ray may use; None means every core of this host."""
    torch_threads: int | None = None
    """Intra-op threads per worker; None divides the cores among the workers."""
    strategy: str = "ddp"
    """How the training is spread over the nodes: ddp (each node a whole replica), zero
    (DDP with the optimizer's state sharded, ZeRO-1) or fsdp (parameters, gradients and
    optimizer state sharded, torch's FSDP2)."""
    ddp_bucket_mb: float | None = None
    """DDP's gradient bucket size in MB; None lets the plan choose (raysim.plan.ddp_bucket_mb):
    one bucket for the whole model where the nodes share this host's cores, else DDP's 25."""
    shared_memory_allreduce: bool = True
    """Average the gradients through shared memory where every node's process is on this
    host (CPU, no network emulated, no compression); false: gloo's all-reduce over
    loopback TCP."""
    measure_steps: bool = True
    """raysim's measurements of every step (time, samples, data wait, every bucket's
    all-reduce, model facts); off only to measure what they cost."""
    trace_steps: int = 3
    """Steps per epoch (the first after each report) whose spans go to the run's timeline,
    trace.json (data wait, forward, backward, each bucket's all-reduce, optimizer step);
    0 turns tracing off. Needs measure_steps."""
    profile_steps: int = 0
    """Steps that torch.profiler records on every node (after one skipped and one warm-up
    step), each node's trace written to profile/<node>.json; 0 (default) leaves the
    profiler off. Needs measure_steps."""
    train_config: dict[str, Any] = field(default_factory=dict)
    """Your training function's own settings, free-form: passed to it as
    config["train_config"] (CLI: --train-config key=value). Everything else is strict."""
    tracking: Tracking = field(default_factory=Tracking)
    """Trackers the run is logged to besides its run directory: {mlflow: {uri, experiment}}
    (the mlflow extra); {} logs nothing else."""
    verbose: bool = False
    """Forward Ray's worker logs to the console."""

    @property
    def global_batch_size(self) -> int:
        return self.num_nodes * self.batch_size

    def to_dict(self) -> dict[str, Any]:
        """Every key as YAML writes it (what config.yaml holds and a train_fn receives)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values.update(
            network=self.network.to_yaml(),
            faults=[dataclasses.asdict(fault) for fault in self.faults],
            stragglers=dict(self.stragglers),
            train_config=dict(self.train_config),
            tracking=self.tracking.to_yaml(),
        )
        return values


INPUT_TYPES: dict[str, Any] = {
    "network": str | dict | None,
    "faults": list | None,
    "stragglers": dict | None,
    "train_config": dict | None,
    "tracking": dict | None,
}
"""What the parsed keys accept as input (YAML values, flags); None means the default."""


RANGES: dict[str, tuple[float | None, float | None, str]] = {
    "num_nodes": (1, None, "use 1 for a single node"),
    "batch_size": (1, None, "use a positive batch size per node"),
    "num_epochs": (1, None, "train at least one epoch"),
    "learning_rate": (0, None, "use a positive learning rate such as 0.0001"),
    "memory_fraction": (0, 1, "use a share of the device in (0, 1], e.g. 0.23"),
    "gpu_fraction": (0, 1, "use a share of the device in (0, 1], e.g. 0.23"),
    "device_memory_gb": (0, None, "use the simulated card's memory in GB, e.g. 10"),
    "image_size": (8, None, "use at least 8 pixels (32 on CPU, 224 on a GPU)"),
    "num_classes": (2, None, "use at least 2 classes"),
    "synthetic_samples": (16, None, "use at least 16 samples"),
    "num_workers_per_loader": (0, None, "use 0 (load in the training process) or more"),
    "max_steps_per_epoch": (1, None, "use a positive cap or leave it unset"),
    "cpus": (1, None, "use at least 1 CPU or leave it unset"),
    "torch_threads": (1, None, "use at least 1 thread or leave it unset"),
    "ddp_bucket_mb": (0, None, "use a positive size in MB, e.g. 25, or leave it unset"),
    "jitter": (0, 1, "use a share in [0, 1], e.g. 0.1"),
    "checkpoint_every": (0, None, "use 0 (never) or a number of epochs"),
    "num_to_keep": (1, None, "keep at least 1 checkpoint"),
    "max_failures": (0, None, "use 0 (fail on the first error) or more"),
    "dashboard_port": (0, 65535, "use a port number, or 0 for a free one"),
    "accumulate_steps": (1, None, "use 1 (no accumulation) or more micro-batches per step"),
    "trace_steps": (0, None, "use 0 (no trace) or a few steps per epoch, e.g. 3"),
    "profile_steps": (0, None, "use 0 (no profiler) or a few steps, e.g. 3"),
    "min_nodes": (1, None, "use at least 1 node or leave it unset"),
    "worker_start_timeout_s": (0, None, "use a positive number of seconds, e.g. 10"),
    "collective_timeout_s": (0, None, "use a positive number of seconds, e.g. 30"),
}
EXCLUSIVE_LOW = {
    "learning_rate", "memory_fraction", "gpu_fraction", "device_memory_gb",
    "worker_start_timeout_s", "ddp_bucket_mb", "collective_timeout_s",
}  # fmt: skip
CHOICES = {
    "dataset": DATASETS, "device": DEVICES, "amp": AMP_DTYPES, "topology": TOPOLOGIES,
    "strategy": STRATEGIES,
}  # fmt: skip
