"""Real runs on the shared local Ray: real Ray Train workers, real gloo all-reduce."""

import json

import pytest
import yaml

import raysim
from raysim.config import replace
from raysim.rundir import read_lines
from tests.run_checks import actors_started, check_run_actors, check_startup_adds_up

pytestmark = pytest.mark.slow


def ranks_by_epoch(run_dir):
    lines = [r for r in read_lines(run_dir / "metrics.jsonl") if r["kind"] == "rank"]
    return {(r["epoch"], r["rank"]): r for r in lines}


def test_four_nodes_train_in_lockstep_and_learn(shared_ray, tiny_config):
    with actors_started() as actors:
        result = raysim.run(tiny_config(num_nodes=4), out=None)
    check_run_actors(actors, nodes=4)
    ranks = ranks_by_epoch(result.run_dir)
    assert set(ranks) == {(e, r) for e in (1, 2) for r in range(4)}
    for epoch in (1, 2):
        checksums = {ranks[(epoch, r)]["param_checksum"] for r in range(4)}
        assert len(checksums) == 1, f"ranks disagree on the weights after epoch {epoch}"
    assert ranks[(1, 0)]["param_checksum"] != ranks[(2, 0)]["param_checksum"]
    # Each rank trains on its own quarter of the 1,438 training images; the sampler
    # pads the shards to 360 each so every rank takes the same number of steps.
    assert [ranks[(1, r)]["train_samples"] for r in range(4)] == [360] * 4
    assert {ranks[(1, r)]["world_size"] for r in range(4)} == {4}
    first, second = result.epochs
    assert second["train_loss"] < first["train_loss"]
    assert result.final_test_accuracy > 0.5, "digits chance level is 0.10"
    assert result.summary["checksums_match"] is True
    assert result.summary["world_size"] == 4 and len(result.summary["nodes"]) == 4
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["final_test_accuracy"] == result.final_test_accuracy
    assert summary["environment"]["backend"] == "gloo"
    assert summary["allreduce"] == "shared memory", "4 nodes on this host, no network emulated"
    assert yaml.safe_load((result.run_dir / "config.yaml").read_text())["num_nodes"] == 4
    check_tensorboard_matches_metrics(result)
    check_startup_adds_up(summary)


def check_tensorboard_matches_metrics(result):
    """TensorBoard's own reader sees the values metrics.jsonl holds, per epoch and per node."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(result.run_dir / "tensorboard")).Reload()
    loss = [(s.step, s.value) for s in events.Scalars("train/loss")]
    assert loss == [(e["epoch"], pytest.approx(e["train_loss"], rel=1e-6)) for e in result.epochs]
    test_acc = [s.value for s in events.Scalars("test/accuracy")]
    assert test_acc == pytest.approx([e["test_accuracy"] for e in result.epochs], rel=1e-6)
    ranks = ranks_by_epoch(result.run_dir)
    node3 = [s.value for s in events.Scalars("node-3/step_time_s")]
    assert node3 == pytest.approx([ranks[(e, 3)]["step_time_s"] for e in (1, 2)], rel=1e-6)
    assert "config/text_summary" in events.Tags()["tensors"]


def test_single_node_runs_the_same_loop(shared_ray, tiny_config):
    result = raysim.run(tiny_config(num_nodes=1, batch_size=32), out=None)
    ranks = ranks_by_epoch(result.run_dir)
    assert set(ranks) == {(1, 0), (2, 0)}
    assert ranks[(1, 0)]["train_samples"] == 1438
    assert result.epochs[1]["train_loss"] < result.epochs[0]["train_loss"]
    assert result.final_test_accuracy > 0.5


def test_same_seed_same_weights(short_run):
    again = raysim.run(replace(short_run.config, run_name="again"), out=None)
    assert again.epochs[0]["param_checksum"] == short_run.epochs[0]["param_checksum"]


def broken_shard_fn(config):
    raise ValueError("cannot read shard broken-shard-7")


def test_worker_failure_is_reported_with_its_cause(shared_ray, tiny_config, tmp_path):
    """A node's exception in a user's function fails the run, named by node, in the error
    (the function's own error first), summary and metrics."""
    cfg = tiny_config(num_nodes=1, num_epochs=1)
    with pytest.raises(raysim.RunFailedError, match=r"node-0[\s\S]*broken-shard-7") as info:
        raysim.run(cfg, train_fn=broken_shard_fn, out=None)
    message = str(info.value)
    head = message[: message.index("broken-shard-7") + 50]
    assert "ValueError: cannot read shard broken-shard-7" in head
    assert "broken_shard_fn" in message
    run_dir = tmp_path / "runs" / "run"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "broken-shard-7" in summary["error"]
    errors = [r for r in read_lines(run_dir / "metrics.jsonl") if r["kind"] == "error"]
    assert "broken-shard-7" in errors[0]["ranks"]["0"]
