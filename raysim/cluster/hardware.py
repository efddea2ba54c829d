"""The hardware a run is planned for: this machine's, or an existing cluster's."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import replace

from raysim.cluster.join import join
from raysim.config.schema import ExperimentConfig
from raysim.plan.host_memory import usable_before_ray_kills
from raysim.plan.resources import Hardware
from raysim.procfs import meminfo_bytes

CUDA_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/proc/driver/nvidia")
"""Where an NVIDIA driver shows itself on Linux (/dev/dxg: WSL2's GPU); without one of
them CUDA cannot start."""


def cuda_may_be_present(device_files: tuple[str, ...] = CUDA_DEVICE_FILES) -> bool:
    """False only where CUDA certainly cannot start: Linux without an NVIDIA driver. Asking
    torch costs its import (~2 s of CPU), which a machine with no GPU then need not pay
    before Ray starts."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(path) for path in device_files)


def detect_hardware() -> Hardware:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    host = Hardware(
        num_cpus=cpus or 1,
        memory_available_bytes=usable_before_ray_kills(
            meminfo_bytes("MemAvailable"), meminfo_bytes("MemTotal")
        ),
    )
    if not cuda_may_be_present():
        return host
    import torch

    if not torch.cuda.is_available():
        return host
    props = torch.cuda.get_device_properties(0)
    return replace(
        host,
        num_gpus=torch.cuda.device_count(),
        gpu_memory_bytes=props.total_memory,
        gpu_name=props.name,
    )


def hardware_for(cfg: ExperimentConfig) -> Hardware:
    """This machine's hardware, or on an existing cluster (`address`) the cluster's."""
    return detect_hardware() if cfg.address is None else cluster_hardware(cfg.address)


def cluster_hardware(address: str) -> Hardware:
    """CPUs and GPUs of an existing Ray cluster, and one GPU's memory, asked of the cluster
    (the driver may have no GPU). Connects briefly unless connected already (`joined`)."""
    import ray

    connect_here = not ray.is_initialized()  # a sweep holds one connection for all runs
    if connect_here:
        join(address, logging_level=logging.WARNING, log_to_driver=False)
    try:
        resources = ray.cluster_resources()
        num_gpus = int(resources.get("GPU", 0))
        memory, name = 0, ""
        if num_gpus:
            ask = ray.remote(num_gpus=0.01, num_cpus=0)(_gpu_properties)
            memory, name = ray.get(ask.remote(), timeout=120)
        return Hardware(
            num_cpus=int(resources.get("CPU", 1)),
            num_gpus=num_gpus,
            gpu_memory_bytes=memory,
            gpu_name=name,
        )
    finally:
        if connect_here:
            ray.shutdown()


def _gpu_properties() -> tuple[int, str]:
    import torch

    props = torch.cuda.get_device_properties(0)
    return props.total_memory, props.name
