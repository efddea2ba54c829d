"""The console's lines: one per epoch, one per failure or recovery."""

from __future__ import annotations

from typing import Any

from raysim.units import MB

SKIP_IN_LINE = {"kind", "epoch", "world_size", "slowest_rank", "wall_time_s", "report_unix"}


def epoch_line(epoch: dict[str, Any], num_epochs: int) -> str:
    if "test_accuracy" not in epoch:  # a user's function: its own numbers
        shown = [
            f"{key} {value:.4g}"
            for key, value in epoch.items()
            if key not in SKIP_IN_LINE and isinstance(value, (int, float))
        ][:8]
        return f"epoch {epoch['epoch']:>3}/{num_epochs}  nodes {epoch['world_size']}  " + (
            "  ".join(shown)
        )
    return (
        f"epoch {epoch['epoch']:>3}/{num_epochs}  nodes {epoch['world_size']}  "
        f"loss {epoch['train_loss']:.4f}  acc {epoch['train_accuracy']:.3f}  "
        f"test acc {epoch['test_accuracy']:.3f}  {epoch['epoch_time_s']:.1f} s  "
        f"{epoch['samples_per_s']:.0f} samples/s  peak RSS {epoch['peak_rss_bytes'] / MB:.0f} MB"
    )


def event_line(record: dict[str, Any]) -> str:
    """A failure of the worker group, or the recovery from one, as the console tells it."""
    if record["kind"] == "recovered":
        return (
            f"raysim: recovered: epoch {record['epoch']} reported "
            f"{record['recover_s']:.1f} s after the failure"
        )
    ranks = ", ".join(sorted(record["ranks"], key=int))
    text = f"raysim: the worker group failed (rank {ranks})"
    if record.get("faults"):
        injected = ", ".join(f"{f['kind']} on node-{f['rank']}" for f in record["faults"])
        text += f": injected {injected}, noticed after {record['detect_s']:.1f} s"
    return text
