"""Controller-side recording: the one place metrics are written (metrics.jsonl, TensorBoard)."""

from raysim.record.recorder import MetricsRecorder

__all__ = ["MetricsRecorder"]
