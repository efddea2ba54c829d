"""Real runs on the shared local Ray: real Ray Train workers, real gloo all-reduce. The
four-node run draws its progress on a terminal and the single-node run writes to a pipe: each
is read by the tests of its loop and by the progress bar's."""

import io
import json

import pytest
import yaml

import raysim
from raysim.config import load_config
from raysim.console.follower import CLEAR_LINE
from raysim.rundir import read_lines
from tests.run_checks import actors_started, check_run_actors, check_startup_adds_up

pytestmark = pytest.mark.slow

FOUR_NODE_BATCH = 24
"""Per node: 15 steps an epoch of 4 × 24 (at lr 1e-3) learn the digits past 0.9 (0.93 measured),
where 45 of 4 × 8 (at 1e-4) took three times the all-reduces."""


TINY = {"image_size": 16, "num_epochs": 2, "device": "cpu"}
"""As the session's TINY (tests/conftest.py), for the module's own runs."""


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def ranks_by_epoch(run_dir):
    lines = [r for r in read_lines(run_dir / "metrics.jsonl") if r["kind"] == "rank"]
    return {(r["epoch"], r["rank"]): r for r in lines}


@pytest.fixture(scope="module")
def four_nodes(shared_ray, tmp_path_factory):
    """Digits at 16 px on four nodes for two full epochs, its console a terminal: (result,
    the actors it started, what the terminal was shown)."""
    terminal = Terminal()
    values = {**TINY, "num_nodes": 4, "batch_size": FOUR_NODE_BATCH, "learning_rate": 1e-3}
    cfg = load_config(**values, run_dir=str(tmp_path_factory.mktemp("four")), run_name="run")
    with actors_started() as actors:
        result = raysim.run(cfg, out=terminal)
    return result, actors, terminal.getvalue()


@pytest.fixture(scope="module")
def single_node(shared_ray, tmp_path_factory):
    """Digits at 16 px on one node for two full epochs, its console a pipe: (result, what
    it was shown)."""
    pipe = io.StringIO()
    values = {**TINY, "num_nodes": 1, "batch_size": 32}
    cfg = load_config(**values, run_dir=str(tmp_path_factory.mktemp("one")), run_name="run")
    return raysim.run(cfg, out=pipe), pipe.getvalue()


def test_four_nodes_train_in_lockstep_and_learn(four_nodes):
    result, actors, _ = four_nodes
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
    assert {ranks[(1, r)]["steps"] for r in range(4)} == {-(-360 // FOUR_NODE_BATCH)}
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


def test_single_node_runs_the_same_loop(single_node):
    result, _ = single_node
    ranks = ranks_by_epoch(result.run_dir)
    assert set(ranks) == {(1, 0), (2, 0)}
    assert ranks[(1, 0)]["train_samples"] == 1438
    assert result.epochs[1]["train_loss"] < result.epochs[0]["train_loss"]
    assert result.final_test_accuracy > 0.5


def test_a_terminal_gets_a_bar_and_a_pipe_does_not(four_nodes, single_node):
    """Both runs take two epochs of steps: the terminal's has a bar, the pipe's does not."""
    shown, piped = four_nodes[2], single_node[1]
    assert "epoch 1/2 [" in shown and "(slowest of 4)" in shown
    bars = [part for part in shown.split(CLEAR_LINE) if part.startswith("epoch ") and "[" in part]
    steps = [int(bar.split("step ")[1].split("/")[0]) for bar in bars]
    total = -(-360 // FOUR_NODE_BATCH)
    assert steps and all(0 < s <= total for s in steps), steps
    assert "epoch   2/2  nodes 1" in piped, "the pipe has the epoch lines"
    assert "\r" not in piped and "slowest of" not in piped


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
