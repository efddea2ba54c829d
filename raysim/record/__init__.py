"""Controller-side recording: the one place metrics are written (metrics.jsonl, and each
tracker of raysim.record.trackers: TensorBoard, MLflow).

MetricsRecorder (Ray Train's callback) is loaded on first use, so the driver's trackers
do not import Ray Train.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MetricsRecorder"]


def __getattr__(name: str) -> Any:
    if name == "MetricsRecorder":
        from raysim.record.recorder import MetricsRecorder

        return MetricsRecorder
    raise AttributeError(f"module 'raysim.record' has no attribute {name!r}")
