"""The built-in experiment: ResNet18 on digits, an image folder or synthetic images.

Written on raysim.worker's public calls only, like a user's own training function.
"""

from raysim.builtin.loop import resnet18_experiment

__all__ = ["resnet18_experiment"]
