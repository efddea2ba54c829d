"""What a projected cluster costs: per epoch, and to reach a target accuracy a run reached.

Cost is GPU-hours times a price per GPU-hour: the user's, or a named list price (PRICES,
each with the date and the page it was read from; prices move, so give your own where it
matters). Time to a target assumes the run's own samples to that target (measured on the
shared host) carry over to the cluster, which holds while the global batch is the run's:
a larger cluster trains a larger global batch per step, which may need more samples.
"""

from __future__ import annotations

from dataclasses import dataclass

from raysim.errors import ConfigError, did_you_mean, is_number
from raysim.projection.step_model import ProjectedStep


@dataclass(frozen=True)
class Price:
    usd_per_gpu_hour: float
    date: str
    source: str


PRICES = {
    "aws-p4d-on-demand": Price(
        4.10, "2024 Q2",
        "AWS p4d.24xlarge (8x A100 40 GB) on demand, US East: $32.77 per hour (xither.com, "
        "'GPU Compute Costs: On-Prem vs. Cloud vs. Spot Instances')"),
    "aws-p4d-capacity-block": Price(
        1.844, "2024 Q4",
        "AWS EC2 Capacity Blocks for ML pricing page: p4d.24xlarge (8x A100), US East (Ohio), "
        "$14.75 per hour, 'effective accelerator hourly rate' $1.844"),
    "aws-p5-capacity-block": Price(
        4.916, "2024 Q4",
        "AWS EC2 Capacity Blocks for ML pricing page: p5.48xlarge (8x H100), US East, $39.33 "
        "per hour, 'effective accelerator hourly rate' $4.916"),
}  # fmt: skip
"""Named list prices per GPU-hour, with the date they were read for and their page."""

IMAGENET_TRAIN_SAMPLES = 1_281_167
"""ImageNet-1k's training set: the epoch of `raysim project --model` unless told."""


def parse_price(text: str) -> tuple[float, str]:
    """(USD per GPU-hour, where it comes from) from a number or a preset's name."""
    preset = PRICES.get(text.strip().lower())
    if preset is not None:
        return preset.usd_per_gpu_hour, f"{text} list price ({preset.date}): {preset.source}"
    try:
        value = float(text)
    except ValueError:
        value = None
    if not is_number(value) or not value > 0:
        raise ConfigError(
            [f"--usd-per-gpu-hour: {text!r} is neither a price > 0 nor a preset; "
             f"{did_you_mean(text, PRICES)}presets: {', '.join(PRICES)}"]
        )  # fmt: skip
    return value, "given: --usd-per-gpu-hour"


@dataclass(frozen=True)
class Cost:
    """One cluster size's time and money per epoch, and to the target when one was reached."""

    gpus: int
    epoch_s: float
    epoch_usd: float
    to_target_s: float | None
    to_target_usd: float | None


def usd(seconds: float, gpus: int, usd_per_gpu_hour: float) -> float:
    return seconds / 3600 * gpus * usd_per_gpu_hour


def cost_of(
    row: ProjectedStep,
    epoch_samples: int,
    usd_per_gpu_hour: float,
    samples_to_target: int | None = None,
) -> Cost:
    """An epoch of `epoch_samples` at the row's throughput; the target after
    `samples_to_target` samples (None: not reached, no figure)."""
    if epoch_samples < 1:
        raise ConfigError([f"--epoch-samples: {epoch_samples!r} must be at least 1"])
    epoch_s = epoch_samples / row.samples_per_s
    target_s = None if samples_to_target is None else samples_to_target / row.samples_per_s
    return Cost(
        gpus=row.gpus,
        epoch_s=epoch_s,
        epoch_usd=usd(epoch_s, row.gpus, usd_per_gpu_hour),
        to_target_s=target_s,
        to_target_usd=None if target_s is None else usd(target_s, row.gpus, usd_per_gpu_hour),
    )
