"""A node's imports on a thread, begun as soon as Ray Train has created its worker.

Between the worker's creation and its function's first line, Ray Train initialises the
train context and the process group on every worker in turn, and a worker waits for the
others there; every DDP node then imports torch._dynamo (DDP's constructor reads its
config, ~2 s of CPU) and the built-in experiment torchvision. Importing them on a thread
from the start fills those waits. This module imports nothing heavy itself: Ray imports
it on the worker to run start_imports.
"""

from __future__ import annotations

from raysim.preload import ImportsAhead

NODE_STACK = ("torch", "ray.train.torch", "torch._dynamo", "raysim.worker.entry")
BUILTIN_STACK = ("torchvision.models", "raysim.builtin.loop")

_started: ImportsAhead | None = None


def start_imports(modules: tuple[str, ...]) -> None:
    """Run on the worker by Ray Train (raysim.cluster.train_helpers.imports_ahead_callback)."""
    global _started
    _started = ImportsAhead(modules)


def wait_for_imports() -> None:
    """The function's own imports never run beside the thread's (a module's import lock
    is then never contended)."""
    if _started is not None:
        _started.wait()
