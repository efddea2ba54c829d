"""A launched script's framework gets raysim's callback (raysim.integrations), so what it
logs becomes metrics lines: done when its first DDP model is built, by then the framework
is imported and its trainer made.

The frameworks are optional: each is imported here only when the script has imported it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch

Replace = Callable[[Any, str, Any], Any]
"""Patches.replace (script_hooks.py): an attribute replaced for the node's lifetime."""


def attach_framework_callbacks(module: torch.nn.Module, replace: Replace) -> None:
    """The Hugging Face Trainer's callback handler, at its first log; the Lightning
    Trainer that trains `module` (the model the DDP wraps), now."""
    if "transformers.trainer_callback" in sys.modules:
        _huggingface(replace)
    if "lightning.pytorch" in sys.modules:
        _lightning(module)


def _huggingface(replace: Replace) -> None:
    from transformers.trainer_callback import CallbackHandler

    from raysim.integrations import huggingface

    original = CallbackHandler.on_log

    def on_log(handler: CallbackHandler, *args: Any, **kwargs: Any) -> Any:
        huggingface.attach(handler)
        return original(handler, *args, **kwargs)

    replace(CallbackHandler, "on_log", on_log)


def _lightning(module: torch.nn.Module) -> None:
    from lightning.pytorch import LightningModule

    from raysim.integrations import lightning

    if isinstance(module, LightningModule) and module._trainer is not None:
        lightning.attach(module._trainer)
