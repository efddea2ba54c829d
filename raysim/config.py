"""Typed experiment configuration: defaults < YAML file < explicit overrides.

The dataclass is the source of truth; YAML is only an input format. Loading is
strict: unknown keys, wrong types and out-of-range values are all collected and
reported together, each naming the key, the value and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DATASETS = ("digits", "imagefolder", "synthetic")
DEVICES = ("auto", "cpu", "cuda")
AMP_DTYPES = ("bf16", "fp16")
TOPOLOGIES = ("single_host", "multi_node")


class ConfigError(ValueError):
    """A configuration problem the user can fix; the message says how."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = problems
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid raysim configuration{where}:\n{lines}")


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
    network: str | dict | None = None
    """Emulated interconnect: a preset (loopback, 1gbe, 10gbe, 25gbe, 100gbe, pcie4, nvlink,
    ib_hdr, ib_ndr) or {bandwidth_gbps, latency_us, algorithm: ring|tree}; None is loopback."""
    grad_compression: str | None = None
    """Gradient compression on the wire: fp16 or bf16 (torch's DDP hooks)."""
    stragglers: dict | None = None
    """{rank: slowdown}: e.g. {2: 1.5} makes node 2's compute take 1.5 times as long."""
    jitter: float = 0.0
    """Random extra compute time per step, up to this share (0.1 = up to 10%)."""
    checkpoint_every: int = 0
    """Save a checkpoint every this many epochs (0: never); needed to recover mid-run."""
    num_to_keep: int = 2
    """Checkpoints kept in the run directory."""
    max_failures: int = 0
    """Worker-group restarts Ray Train may make after a failure before the run fails."""
    faults: list | None = None
    """Injected faults, each {kind: worker_crash|oom|slow_node|node_loss, rank, epoch, step,
    seconds}; rank is the simulated node."""
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
    ddp_bucket_mb: float | None = None
    """DDP's gradient bucket size in MB; None lets the plan choose (raysim.plan.ddp_bucket_mb):
    one bucket for the whole model where the nodes share this host's cores, else DDP's 25."""
    verbose: bool = False
    """Forward Ray's worker logs to the console."""

    @property
    def global_batch_size(self) -> int:
        return self.num_nodes * self.batch_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_RANGES: dict[str, tuple[float | None, float | None, str]] = {
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
    "min_nodes": (1, None, "use at least 1 node or leave it unset"),
    "worker_start_timeout_s": (0, None, "use a positive number of seconds, e.g. 10"),
}
_EXCLUSIVE_LOW = {
    "learning_rate", "memory_fraction", "gpu_fraction", "device_memory_gb",
    "worker_start_timeout_s", "ddp_bucket_mb",
}  # fmt: skip
_CHOICES = {"dataset": DATASETS, "device": DEVICES, "amp": AMP_DTYPES, "topology": TOPOLOGIES}


def field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(ExperimentConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(ExperimentConfig)}


def config_keys() -> list[str]:
    return list(field_types())


def _accepts(type_hint: Any, value: Any) -> bool:
    args = typing.get_args(type_hint)
    if typing.get_origin(type_hint) in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in args)
    if type_hint is type(None):
        return value is None
    if type_hint is bool:
        return isinstance(value, bool)
    if type_hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if type_hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if type_hint is str:
        return isinstance(value, str)
    return True


def _type_name(type_hint: Any) -> str:
    if typing.get_origin(type_hint) in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(type_hint) if a is not type(None)]
        return " or ".join(names) + " (or null)"
    return getattr(type_hint, "__name__", str(type_hint))


def _unknown_key_problem(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(known)}"
    return f"unknown key '{key}': {hint}"


def _range_problems(values: dict[str, Any]) -> list[str]:
    problems = []
    for key, (low, high, fix) in _RANGES.items():
        value = values.get(key)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        too_low = low is not None and (value <= low if key in _EXCLUSIVE_LOW else value < low)
        too_high = high is not None and value > high
        if too_low or too_high:
            problems.append(f"{key}: {value!r} is out of range; {fix}")
    problems += _emulation_problems(values)
    problems += _topology_problems(values)
    for key, choices in _CHOICES.items():
        value = values.get(key)
        if isinstance(value, str) and value not in choices:
            problems.append(f"{key}: {value!r} is not one of {', '.join(choices)}")
    return problems


def _emulation_problems(values: dict[str, Any]) -> list[str]:
    from raysim.faults import fault_problems
    from raysim.network import HOOK_COMPRESSIONS, parse_compression, parse_network

    problems = []
    for parse, key in ((parse_network, "network"), (parse_compression, "grad_compression")):
        try:
            parsed = parse(values.get(key))
        except ConfigError as err:
            problems += err.problems
            continue
        if key == "grad_compression" and parsed not in HOOK_COMPRESSIONS:
            problems.append(f"grad_compression: {parsed!r} is not run; use fp16 or bf16")
    nodes = values.get("num_nodes", 1)
    problems += fault_problems(values.get("faults"), nodes)
    for rank, slowdown in (values.get("stragglers") or {}).items():
        if not isinstance(rank, int) or not 0 <= rank < nodes:
            problems.append(f"stragglers: rank {rank!r} is not a node; use 0 to {nodes - 1}")
        if not isinstance(slowdown, (int, float)) or slowdown < 1:
            problems.append(f"stragglers: slowdown {slowdown!r} for rank {rank}; use 1 or more")
    return problems


def _topology_problems(values: dict[str, Any]) -> list[str]:
    """Cross-key rules of multi-node topology, elastic size and node loss."""
    nodes = values.get("num_nodes", 1)
    multi_node = values.get("topology") == "multi_node"
    min_nodes = values.get("min_nodes")
    elastic = isinstance(min_nodes, int) and min_nodes < nodes
    problems = []
    if isinstance(min_nodes, int) and min_nodes > nodes:
        problems.append(f"min_nodes: {min_nodes} is more than num_nodes {nodes}; use 1 to {nodes}")
    if multi_node and values.get("address") is not None:
        problems.append(
            "topology: multi_node starts a local cluster of its own; on an existing cluster "
            "(address) every machine is a node already: use topology: single_host"
        )
    lost = [f for f in values.get("faults") or [] if isinstance(f, dict)]
    if any(f.get("kind") == "node_loss" for f in lost):
        if not multi_node:
            problems.append(
                "faults: node_loss removes a simulated node's Ray node: use topology: multi_node"
            )
        if values.get("max_failures", 0) > 0 and not elastic:
            problems.append(
                "faults: node_loss takes a node away for good, so a fixed-size run would wait "
                f"for it forever: set min_nodes below num_nodes (e.g. {max(1, nodes - 1)}) so "
                "Ray Train goes on with fewer nodes, or max_failures: 0 to end the run there"
            )
    return problems


def build_config(values: dict[str, Any], source: str | None = None) -> ExperimentConfig:
    """Validate a flat mapping of config keys and build the config, or raise ConfigError."""
    types_by_key = field_types()
    known = config_keys()
    problems = [_unknown_key_problem(k, known) for k in values if k not in known]
    for key, value in values.items():
        if key in known and not _accepts(types_by_key[key], value):
            problems.append(
                f"{key}: {value!r} is a {type(value).__name__}; "
                f"expected {_type_name(types_by_key[key])}"
            )
    if not problems:
        problems = _range_problems(values)
    if problems:
        raise ConfigError(problems, source)
    return ExperimentConfig(**values)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"config file {str(path)!r} does not exist; check the path"])
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError([f"not valid YAML: {err}"], str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError(["the file must be a mapping of key: value lines"], str(path))
    return data


def load_config(path: str | Path | None = None, **overrides: Any) -> ExperimentConfig:
    """Defaults < YAML file (if given) < overrides (None values are ignored)."""
    values: dict[str, Any] = read_yaml(path) if path is not None else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return build_config(values, source=str(path) if path is not None else None)


def replace(cfg: ExperimentConfig, **changes: Any) -> ExperimentConfig:
    """A validated copy with some keys changed."""
    return build_config({**cfg.to_dict(), **changes})


def dump_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
