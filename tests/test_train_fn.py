"""A user's own training function on the simulated cluster, with raysim's additions."""

import subprocess
import sys
from pathlib import Path

import pytest

import raysim
from raysim.rundir import read_lines

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.custom_train_loop import train_fn  # noqa: E402
from tests.test_run import check_startup_adds_up  # noqa: E402
from tests.test_train_helpers import actors_started, check_run_actors  # noqa: E402

pytestmark = pytest.mark.slow


def test_custom_function_runs_at_one_and_four_nodes(shared_ray, tiny_config):
    results = {}
    for nodes in (1, 4):
        cfg = tiny_config(
            num_nodes=nodes, num_epochs=2, batch_size=32, learning_rate=1e-2,
            gpu_fraction=0.25, memory_fraction=0.25, run_name=f"n{nodes}",
        )  # fmt: skip
        with actors_started() as actors:
            results[nodes] = raysim.run(cfg, train_fn=train_fn, out=None)
        check_run_actors(actors, nodes)
    four = results[4]
    ranks = [r for r in read_lines(four.run_dir / "metrics.jsonl") if r["kind"] == "rank"]
    assert {(r["epoch"], r["rank"]) for r in ranks} == {(e, r) for e in (1, 2) for r in range(4)}
    for rank in ranks:  # the user's keys, and raysim's own measurements beside them
        assert 0 <= rank["accuracy"] <= 1 and rank["loss"] > 0
        assert rank["node_id"] == f"node-{rank['rank']}" and rank["world_size"] == 4
        assert rank["interval_s"] > 0
        # prepare() put the node under its budget: the guard reports against it
        assert rank["memory_budget_bytes"] == int(0.25 * 10 * 2**30)
        assert 0 <= rank["memory_peak_bytes"] < rank["memory_budget_bytes"]
        # what the node held before training (not charged): Python, torch, Ray's worker
        assert 300e6 < rank["memory_baseline_bytes"] < 8e9
        assert rank["memory_headroom_bytes"] == (
            rank["memory_budget_bytes"] - rank["memory_peak_bytes"]
        )
    epochs = four.epochs
    assert [e["epoch"] for e in epochs] == [1, 2]
    mean_loss = sum(r["loss"] for r in ranks if r["epoch"] == 2) / 4
    assert epochs[1]["loss"] == pytest.approx(mean_loss)
    assert epochs[1]["accuracy"] > 0.8, "a linear rule is learnt in two epochs"

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(four.run_dir / "tensorboard")).Reload()
    assert [s.value for s in events.Scalars("metrics/loss")] == pytest.approx(
        [e["loss"] for e in epochs]
    )
    check_startup_adds_up(four.summary)  # a user's function is timed to its first step too
    comparison = raysim.compare([results[1].run_dir, four.run_dir])
    assert [r["status"] for r in comparison["runs"]] == ["finished", "finished"]


def failing_fn(config):
    raise ValueError("my own bug: learning rate schedule is empty")


def test_a_failing_function_shows_its_own_error_first(shared_ray, tiny_config):
    with pytest.raises(raysim.RunFailedError) as info:
        raysim.run(tiny_config(num_nodes=2, run_name="bad"), train_fn=failing_fn, out=None)
    message = str(info.value)
    head = message[: message.index("my own bug") + 50]
    assert "ValueError: my own bug: learning rate schedule is empty" in head
    assert "failing_fn" in message


def test_train_fn_flag_loads_module_function(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "raysim.cli", "run", "--train-fn",
         "examples.custom_train_loop:train_fn", "--num-nodes", "2", "--num-epochs", "1",
         "--batch-size", "64", "--device", "cpu", "--run-dir", str(tmp_path), "--run-name", "cli"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    ranks = [r for r in read_lines(tmp_path / "cli" / "metrics.jsonl") if r["kind"] == "rank"]
    assert {r["rank"] for r in ranks} == {0, 1} and all("accuracy" in r for r in ranks)


def test_bad_train_fn_flag_is_a_clear_error():
    done = subprocess.run(
        [sys.executable, "-m", "raysim.cli", "run", "--train-fn", "examples.nope:train"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--train-fn examples.nope:train" in done.stderr and "module:function" in done.stderr


def plain_report_fn(config):
    import ray.train

    for step in range(2):
        ray.train.report({"loss": 1.0 / (step + 1)})


def test_a_plain_ray_train_report_is_recorded(shared_ray, tiny_config):
    cfg = tiny_config(num_nodes=2, run_name="plain")
    result = raysim.run(cfg, train_fn=plain_report_fn, out=None)
    ranks = [r for r in read_lines(result.run_dir / "metrics.jsonl") if r["kind"] == "rank"]
    assert sorted((r["epoch"], r["rank"], r["loss"]) for r in ranks) == [
        (1, 0, 1.0), (1, 1, 1.0), (2, 0, 0.5), (2, 1, 0.5),
    ]  # fmt: skip
    assert [e["loss"] for e in result.epochs] == [1.0, 0.5]


def ddp_buckets_fn(config):
    """Reports the DDP settings `prepare` gave the model."""
    import torch

    from raysim import worker

    model = worker.prepare(torch.nn.Linear(4, 2))
    worker.report(
        {"bucket_bytes_cap": model.bucket_bytes_cap, "views": model.gradient_as_bucket_view}
    )


def test_prepare_gives_ddp_the_plans_buckets(shared_ray, tiny_config):
    from raysim.plan.resources import WHOLE_MODEL_BUCKET_MB

    result = raysim.run(
        tiny_config(num_nodes=2, run_name="buckets"), train_fn=ddp_buckets_fn, out=None
    )
    ranks = [r for r in read_lines(result.run_dir / "metrics.jsonl") if r["kind"] == "rank"]
    assert [(r["bucket_bytes_cap"], r["views"]) for r in ranks] == [
        (int(WHOLE_MODEL_BUCKET_MB * 2**20), True)
    ] * 2
