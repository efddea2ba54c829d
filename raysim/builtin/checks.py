"""What the driver checks of the built-in experiment before Ray starts, without torch:
the driver imports torch and Ray Train on a thread meanwhile (raysim.preload)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from raysim.worker import ExperimentConfig

RESNET18_BACKBONE_PARAMETERS = 11_176_512
"""torchvision's ResNet18 without its classifier (tests/local_ray/test_memory.py counts the real one)."""


def parameter_count(num_classes: int) -> int:
    """The built-in model's parameters without building it: torchvision's import alone
    costs the driver ~1 s before every run."""
    return RESNET18_BACKBONE_PARAMETERS + 513 * num_classes  # fc: 512 weights + a bias each


def check_weights(weights_path: str | None) -> None:
    """Before Ray starts: a weights file that is not there fails every node alike."""
    if weights_path is not None and not Path(weights_path).is_file():
        raise FileNotFoundError(
            f"weights_path {weights_path} does not exist; give a local .pth file (state dict)"
        )


def decodes_images(cfg: ExperimentConfig) -> bool:
    """Whether check_data decodes a data set (with torch) rather than checking nothing."""
    return cfg.dataset == "imagefolder"


def check_data(cfg: ExperimentConfig, cache: Path) -> None:
    """Fail on a bad data set before Ray starts; for imagefolder, build the decoded cache."""
    if decodes_images(cfg):
        from raysim.builtin.data import image_folder

        image_folder(Path(cfg.data_dir), cfg.image_size, cache)
