"""The model every simulated node trains, and the state that identifies it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from raysim.builtin.checks import check_weights


def build_model(num_classes: int, weights_path: str | None = None) -> nn.Module:
    """torchvision ResNet18; optional start weights from a local file, never a download."""
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=num_classes)
    if weights_path is not None:
        load_weights(model, Path(weights_path))
    return model


def adam(model: nn.Module, learning_rate: float) -> torch.optim.Adam:
    """Adam with its fused kernel: one pass over all parameters instead of a loop of small
    ops per tensor. Same algorithm, fewer kernel launches (measured in BENCHMARKS.md)."""
    return torch.optim.Adam(model.parameters(), lr=learning_rate, fused=True)


def checkpoint_stages(model: nn.Module) -> nn.Module:
    """Activation checkpointing of ResNet's four stages: their activations are recomputed
    in backward. Forwards are wrapped in place, so state dict keys stay the same."""
    from torch.utils.checkpoint import checkpoint

    for name in ("layer1", "layer2", "layer3", "layer4"):
        stage = getattr(model, name)
        plain = stage.forward

        def forward(inputs, plain=plain):
            if not torch.is_grad_enabled():
                return plain(inputs)
            return checkpoint(plain, inputs, use_reentrant=False)

        stage.forward = forward
    return model


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a state dict; a classifier head of another size is left freshly initialised."""
    check_weights(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    compatible = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(compatible, strict=False)


def parameter_checksum(model: nn.Module) -> str:
    """Hash of every parameter's whole bytes: equal on every rank iff the weights are identical
    (under FSDP a collective: every rank calls it)."""
    digest = hashlib.sha256()
    for param in model.parameters():
        # A sharded parameter (FSDP's DTensor) is gathered whole: every rank takes part.
        whole = param.full_tensor() if hasattr(param, "full_tensor") else param
        digest.update(whole.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
