"""raysim's TensorBoard event files, written without torch, read back by TensorBoard."""

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from raysim.record.trackers.event_writer import EventWriter


def test_scalars_text_and_hparams_read_back_as_tensorboard_reads_them(tmp_path):
    writer = EventWriter(tmp_path)
    writer.add_text("config", "num_nodes: 2", 0)
    for step, loss in ((1, 2.5), (2, 1.25)):
        writer.add_scalar("train/loss", loss, step)
    hparams = {"num_nodes": 2, "learning_rate": 0.01, "amp": "bf16", "memory_fraction": None}
    writer.add_hparams(hparams, {"hparam/final_test_accuracy": 0.9})
    writer.close()
    events = EventAccumulator(str(tmp_path)).Reload()
    assert [(s.step, s.value) for s in events.Scalars("train/loss")] == [(1, 2.5), (2, 1.25)]
    assert events.Scalars("hparam/final_test_accuracy")[0].value == pytest.approx(0.9)
    assert events.Tensors("config/text_summary")[0].tensor_proto.string_val == [b"num_nodes: 2"]
    content = events.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    start = HParamsPluginData.FromString(content[hparams_metadata.SESSION_START_INFO_TAG])
    given = start.session_start_info.hparams
    shown = {name: value.WhichOneof("kind") for name, value in given.items()}
    assert shown == {"num_nodes": "number_value", "learning_rate": "number_value",
                     "amp": "string_value"}  # fmt: skip
    experiment = HParamsPluginData.FromString(content[hparams_metadata.EXPERIMENT_TAG]).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["hparam/final_test_accuracy"]
