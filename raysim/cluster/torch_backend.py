"""Ray Train's torch process-group set-up, with the controller left without torch.

Ray Train's controller unpickles the backend config and calls its backend. TorchConfig's
module imports torch at the top, so every run's controller imported torch (1.4 CPU-s of
unpickling here, 500 MB of memory) before it could ask for its workers. This config does
the same set-up as TorchConfig's backend (the master address from rank 0, torchrun's
environment variables, init_process_group on every rank, the process group destroyed at
the end); what needs torch runs on the workers only, through the functions below, which
import Ray's own torch helpers there.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import ray
from ray.train.backend import Backend, BackendConfig
from ray.train.v2._internal.util import TrainingFramework


@dataclass
class LeanTorchConfig(BackendConfig):
    """TorchConfig's fields and behaviour for the env:// rendezvous raysim uses; the
    backend is the plan's (gloo or nccl), which TorchTrainer would also fill in."""

    backend: str | None = None
    timeout_s: int = 1800

    @property
    def backend_cls(self):
        return LeanTorchBackend

    @property
    def train_func_context(self):
        return _torch_context

    @property
    def framework(self):
        return TrainingFramework.TORCH

    def to_dict(self) -> dict:
        return {"backend": self.backend, "init_method": "env", "timeout_s": self.timeout_s}


class LeanTorchBackend(Backend):
    share_cuda_visible_devices: bool = True

    def on_start(self, worker_group, backend_config: LeanTorchConfig) -> None:
        address, port = worker_group.execute_single(0, _address_and_port)
        worker_group.execute(_rendezvous_env, address=address, port=port)
        ray.get(
            [
                worker_group.execute_single_async(
                    rank,
                    _process_group,
                    backend=backend_config.backend,
                    world_rank=rank,
                    world_size=len(worker_group),
                    timeout_s=backend_config.timeout_s,
                )
                for rank in range(len(worker_group))
            ]
        )

    def on_shutdown(self, worker_group, backend_config: LeanTorchConfig) -> None:
        from ray._private import ray_constants
        from ray.exceptions import GetTimeoutError
        from ray.train.constants import (
            DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
            TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
        )

        futures = worker_group.execute_async(_shutdown, destroy=len(worker_group) > 1)
        timeout_s = ray_constants.env_integer(
            TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S, DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S
        )
        with contextlib.suppress(GetTimeoutError):  # as Ray's: the workers are ended next
            ray.get(futures, timeout=timeout_s)


PORTS_FROM = 10000
"""The lowest port tried for the process group's store (below, the well-known services')."""


def _ephemeral_low() -> int:
    """The first port the kernel hands to outgoing connections (Linux's default 32768)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_listening_port(family: int, below: int, tries: int = 64) -> int | None:
    """A port in [PORTS_FROM, below) that binds now, tried in random order; None if none
    of `tries` does. Below the ephemeral range no outgoing connection is given it."""
    import random
    import socket

    ports = range(PORTS_FROM, below)
    for port in random.sample(ports, min(tries, len(ports))):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("", port))
            except OSError:
                continue
            return port
    return None


def _address_and_port() -> tuple[str, int]:
    """On rank 0: its address and a free port for the process group's store. Ray's own pick
    (find_free_port) is a port from the ephemeral range, which any process's next outgoing
    connection may take before the store binds it: EADDRINUSE at init_process_group, seen
    in a full test run (two test workers, a run restarted after a crash). So the port comes
    from below that range, where only a listener that chooses it could."""
    import socket

    from ray.train._internal.utils import get_address_and_port

    address, fallback = get_address_and_port()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    port = free_listening_port(family, _ephemeral_low())
    return address, fallback if port is None else port


def _rendezvous_env(address: str, port: int) -> None:
    """On each worker: MASTER_ADDR and MASTER_PORT, then torchrun's rank variables."""
    import os

    from ray.train.torch.config import _set_torch_distributed_env_vars

    os.environ["MASTER_ADDR"] = address
    os.environ["MASTER_PORT"] = str(port)
    _set_torch_distributed_env_vars()


def _process_group(backend: str, world_rank: int, world_size: int, timeout_s: int) -> None:
    from ray.train.torch.config import _setup_torch_process_group

    _setup_torch_process_group(backend, world_rank, world_size, "env://", timeout_s)


def _shutdown(destroy: bool) -> None:
    from ray.train.torch.config import _shutdown_torch

    _shutdown_torch(destroy_process_group=destroy)


def _torch_context():
    """Around the training function on each worker: TorchConfig's (the CUDA device set)."""
    from ray.train.torch.config import TorchConfigContextManager

    return TorchConfigContextManager()
