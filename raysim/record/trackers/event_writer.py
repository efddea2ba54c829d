"""TensorBoard event files written with the tensorboard package alone.

The TensorBoard tracker runs in Ray Train's controller, which needs no torch: torch's
SummaryWriter would import it there (1.2 CPU-s at the first epoch). This writes the same
records torch's writer does for what raysim logs: scalars as simple values, text as the
text plugin's tensor, hparams as the hparams plugin's three summaries.
"""

from __future__ import annotations

import time
from pathlib import Path

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.hparams.api_pb2 import (
    DataType,
    Experiment,
    HParamInfo,
    MetricInfo,
    MetricName,
    Status,
)
from tensorboard.plugins.hparams.plugin_data_pb2 import (
    HParamsPluginData,
    SessionEndInfo,
    SessionStartInfo,
)
from tensorboard.plugins.text.plugin_data_pb2 import TextPluginData
from tensorboard.summary.writer.event_file_writer import EventFileWriter

HParam = int | float | str | bool


class EventWriter:
    """add_scalar, add_text, add_hparams, flush and close, as torch's SummaryWriter."""

    def __init__(self, log_dir: Path | str):
        self._file = EventFileWriter(str(log_dir))

    def _add(self, summary: Summary, step: int) -> None:
        self._file.add_event(Event(summary=summary, wall_time=time.time(), step=step))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self._add(Summary(value=[Summary.Value(tag=tag, simple_value=float(value))]), step)

    def add_text(self, tag: str, text: str, step: int) -> None:
        metadata = SummaryMetadata(
            plugin_data=SummaryMetadata.PluginData(
                plugin_name="text", content=TextPluginData(version=0).SerializeToString()
            )
        )
        tensor = TensorProto(
            dtype="DT_STRING",
            string_val=[text.encode("utf-8")],
            tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]),
        )
        value = Summary.Value(tag=f"{tag}/text_summary", metadata=metadata, tensor=tensor)
        self._add(Summary(value=[value]), step)

    def add_hparams(self, hparams: dict[str, HParam | None], metrics: dict[str, float]) -> None:
        """The run's hyperparameters and final metrics for the HParams tab (step 0)."""
        start = SessionStartInfo()
        infos = []
        for name, value in hparams.items():
            if value is None:  # unset (as torch's writer leaves it out)
                continue
            if isinstance(value, bool):
                start.hparams[name].bool_value, kind = value, "DATA_TYPE_BOOL"
            elif isinstance(value, int | float):
                start.hparams[name].number_value, kind = value, "DATA_TYPE_FLOAT64"
            else:
                start.hparams[name].string_value, kind = str(value), "DATA_TYPE_STRING"
            infos.append(HParamInfo(name=name, type=DataType.Value(kind)))
        experiment = Experiment(
            hparam_infos=infos, metric_infos=[MetricInfo(name=MetricName(tag=m)) for m in metrics]
        )
        end = SessionEndInfo(status=Status.Value("STATUS_SUCCESS"))
        for tag, data in (
            (hparams_metadata.EXPERIMENT_TAG, HParamsPluginData(experiment=experiment)),
            (hparams_metadata.SESSION_START_INFO_TAG, HParamsPluginData(session_start_info=start)),
            (hparams_metadata.SESSION_END_INFO_TAG, HParamsPluginData(session_end_info=end)),
        ):
            data.version = hparams_metadata.PLUGIN_DATA_VERSION
            metadata = SummaryMetadata(
                plugin_data=SummaryMetadata.PluginData(
                    plugin_name=hparams_metadata.PLUGIN_NAME, content=data.SerializeToString()
                )
            )
            self._add(Summary(value=[Summary.Value(tag=tag, metadata=metadata)]), 0)
        for tag, value in metrics.items():
            self.add_scalar(tag, value, 0)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
