"""A user's own training function on the simulated cluster, with raysim's additions: it
gets every raysim feature through the same public calls: measured steps, model facts, the memory
floor, fit, project, train_config, the console."""

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import raysim
from raysim import worker
from raysim.cli import main
from raysim.config import PRESETS
from raysim.projection.collectives import Topology, allreduce_cost
from raysim.projection.comm_model import allreduce_seconds
from raysim.projection.links import INTRA_LINKS, NETWORK_LINKS
from raysim.rundir import epoch_lines, rank_lines, read_lines

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from examples.transformer_lm import DEFAULTS as LM_DEFAULTS  # noqa: E402
from examples.transformer_lm import TinyLM  # noqa: E402
from examples.transformer_lm import train_fn as lm_train_fn  # noqa: E402
from tests.run_checks import (  # noqa: E402
    actors_started,
    check_link_acts,
    check_run_actors,
    check_startup_adds_up,
)

pytestmark = pytest.mark.slow


class SmallCNN(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4)
        )  # fmt: skip
        self.head = nn.Linear(width * 16, 10)

    def forward(self, images):
        return self.head(self.features(images).flatten(1))


def wide_mlp() -> nn.Module:
    """3.2M parameters (13 MB of fp32 gradients) and small activations."""
    return nn.Sequential(nn.Flatten(), nn.Linear(768, 4096), nn.ReLU(), nn.Linear(4096, 10))


def cnn_fn(config):
    """Plain PyTorch: prepare, then an ordinary loop; no other raysim call. It reports the
    DDP settings `prepare` gave the model beside its loss."""
    settings = config["train_config"]
    torch.manual_seed(0)
    size = settings.get("size", 16)
    data = TensorDataset(torch.randn(2048, 3, size, size), torch.randint(0, 10, (2048,)))
    model = wide_mlp() if settings.get("model") == "mlp" else SmallCNN(settings.get("width", 8))
    model, loader = worker.prepare(model, DataLoader(data, batch_size=config["batch_size"]))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(1, config["num_epochs"] + 1):
        for step, (images, labels) in enumerate(loader, 1):
            loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step == config["max_steps_per_epoch"]:  # raysim fit's trials set it
                break
        # one node (raysim fit's trials): prepare leaves the model unwrapped, no buckets
        worker.report({"epoch": epoch, "loss": loss.item(), "seen": settings.get("width", 0),
                       "bucket_bytes_cap": getattr(model, "bucket_bytes_cap", None),
                       "views": getattr(model, "gradient_as_bucket_view", None)})  # fmt: skip


CNN_STEPS = 8


@pytest.fixture(scope="module")
def cnn_run(shared_ray, tmp_path_factory):
    """One run of a user's CNN for the tests that read it: profiled, with its console;
    CNN_STEPS of its 64 steps an epoch."""
    out = io.StringIO()
    cfg = raysim.load_config(
        num_nodes=2, num_epochs=2, batch_size=16, image_size=16, device="cpu",
        max_steps_per_epoch=CNN_STEPS, profile_steps=2, train_config={"width": 8},
        run_dir=str(tmp_path_factory.mktemp("cnn")), run_name="cnn",
    )  # fmt: skip
    return raysim.run(cfg, train_fn=cnn_fn, out=out), out.getvalue()


def test_profile_steps_write_every_nodes_trace_for_a_users_function(cnn_run):
    result, _ = cnn_run
    for node in ("node-0", "node-1"):
        events = json.loads((result.run_dir / "profile" / f"{node}.json").read_text())
        names = {e.get("name") for e in events["traceEvents"]}
        assert sorted(n for n in names if n and n.startswith("ProfilerStep#")) == [
            "ProfilerStep#2",
            "ProfilerStep#3",
        ]
        assert "aten::convolution" in names and "Optimizer.step#Adam.step" in names


def cnn_parameters(width: int) -> int:
    return sum(p.numel() for p in SmallCNN(width).parameters())


def test_a_users_cnn_gets_steps_model_facts_and_its_own_train_config(cnn_run):
    result, _ = cnn_run
    ranks = rank_lines(read_lines(result.run_dir / "metrics.jsonl"))
    assert len(ranks) == 4
    for rank in ranks:
        assert rank["step_time_s"] > 0 and rank["samples_per_s"] > 0
        assert rank["optimizer_steps"] == CNN_STEPS
        assert rank["measured_samples"] == CNN_STEPS * 16
        assert rank["seen"] == 8, "train_config reached the function"
    model = json.loads((result.run_dir / "summary.json").read_text())["model"]
    parameters = cnn_parameters(8)
    assert model["name"] == "SmallCNN"
    assert model["parameters"] == model["trainable_parameters"] == parameters
    assert model["gradient_bytes"] == 4 * parameters
    assert sum(model["ddp_buckets_bytes"]) == model["gradient_bytes"]
    shares = model["bucket_ready_fraction"]
    assert len(shares) == len(model["ddp_buckets_bytes"]) and shares[-1] == pytest.approx(1.0)
    assert all(0 <= share <= 1 for share in shares)
    assert result.summary["samples_per_s"] > 0 and result.summary["step_time_s"] > 0
    assert result.summary["allreduce"] == "shared memory"


LM_SETTINGS = {"sequences": 256, "width": 256}


@pytest.fixture(scope="module")
def lm_runs(shared_ray, tmp_path_factory):
    """The transformer on loopback (named lm) and over 1 GbE, side by side."""
    run_dir = str(tmp_path_factory.mktemp("lm"))
    runs = {}
    for network, name in (("loopback", "lm"), ("1gbe", "lm-1gbe")):
        cfg = raysim.load_config(
            num_nodes=2, run_name=name, network=network, num_epochs=1, max_steps_per_epoch=6,
            batch_size=4, learning_rate=1e-3, device="cpu", run_dir=run_dir,
            train_config=LM_SETTINGS,
        )  # fmt: skip
        runs[network] = raysim.run(cfg, train_fn=lm_train_fn, out=None)
    return runs


def test_a_slow_network_holds_each_step_for_the_modelled_time_of_that_models_bytes(lm_runs):
    paths = {network: result.summary["allreduce"] for network, result in lm_runs.items()}
    assert paths == {"loopback": "shared memory", "1gbe": "gloo"}
    model = lm_runs["1gbe"].summary["model"]
    assert model["name"] == "TinyLM"
    ranks = {
        network: rank_lines(read_lines(result.run_dir / "metrics.jsonl"))
        for network, result in lm_runs.items()
    }
    check_link_acts(ranks, allreduce_seconds(model["gradient_bytes"], 2, PRESETS["1gbe"]))


def test_project_uses_the_runs_own_model_and_step(lm_runs, tmp_path, capsys):
    run_dir = lm_runs["loopback"].run_dir
    out = tmp_path / "p.json"
    assert main(["project", str(run_dir), "--network", "1gbe", "--nodes", "1,2",
                 "--out", str(out)]) == 0  # fmt: skip
    rows = json.loads(out.read_text())
    model = json.loads((run_dir / "summary.json").read_text())["model"]
    # the transformer's own bytes, in DDP's default buckets, between 2 machines on 1 GbE
    two = Topology(2, 1, INTRA_LINKS["nvlink"], NETWORK_LINKS["1gbe"])
    expected = sum(allreduce_cost(b, two)[0] for b in model["default_buckets_bytes"])
    assert rows[1]["comm_s"] == pytest.approx(expected)
    settings = {**LM_DEFAULTS, **LM_SETTINGS}
    lm = TinyLM(*(settings[key] for key in ("vocab", "context", "width", "layers", "heads")))
    parameters = sum(p.numel() for p in lm.parameters())
    assert model["gradient_bytes"] == 4 * parameters, "the transformer's, not ResNet18's 45 MB"
    # the readiness the run measured feeds the projection
    ready = model["default_bucket_ready_fraction"]
    assert len(ready) == len(model["default_buckets_bytes"]) and 0 <= min(ready) <= max(ready) <= 1
    assert ready[-1] == pytest.approx(1.0) and 0 < model["backward_s"] < 0.2  # 0.044 s measured
    assert rows[0]["readiness_source"] == "measured in the run (DDP's default buckets)"
    assert rows[0]["step_source"].startswith("measured on the simulated CPU device")
    assert "lm projected onto machines of 1 GPU(s)" in capsys.readouterr().out

    # the same run in the report, projected onto 2 machines of 8 GPUs, labelled projected
    report = tmp_path / "report"
    assert main(["compare", str(run_dir), "--out", str(report),
                 "--target", "gpus_per_node=8,intra=nvlink,network=ib_hdr"]) == 0  # fmt: skip
    comparison = json.loads((report / "comparison.json").read_text())
    row = comparison["projection"]["rows"][0]
    assert (row["machines"], row["gpus"]) == (2, 16)
    main(["project", str(run_dir), "--gpus-per-node", "8", "--intra", "nvlink", "--network",
          "ib_hdr", "--nodes", "2", "--out", str(out)])  # fmt: skip
    assert row["efficiency"] == pytest.approx(json.loads(out.read_text())[0]["efficiency"])
    assert 0 < row["efficiency"] <= 1 and row["speedup"] == pytest.approx(16 * row["efficiency"])
    text = (report / "report.md").read_text()
    assert "Projected on a real cluster (not measured): machines of 8 GPU(s)" in text
    assert (report / "projected_throughput_vs_machines.png").stat().st_size > 10_000
    assert "projected (not measured) on machines of 8 GPU(s)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("fraction", "refused_for"),
    [(0.005, "the model's gradients alone take 13 MB"),
     (0.03, "the model's gradients and Adam's 2 moments alone take 38 MB")],
)  # fmt: skip
def test_a_budget_below_the_models_state_is_refused_before_its_first_step(
    shared_ray, tiny_config, fraction, refused_for
):
    """Gradients are checked at prepare, Adam's moments before the optimizer's first step
    (before it allocates them): the same message as the built-in's, naming the node."""
    cfg = tiny_config(num_nodes=2, run_name=f"floor{fraction}", memory_fraction=fraction,
                      device_memory_gb=1.0, train_config={"model": "mlp"})  # fmt: skip
    with pytest.raises(raysim.RunFailedError) as info:
        raysim.run(cfg, train_fn=cnn_fn, out=None)
    message = str(info.value)
    # both nodes have the same budget; whichever reached its check first is the one reported
    failed = re.search(r"--- (node-\d \(rank \d\)) ---", message).group(1)
    assert f"{failed}: memory_fraction {fraction:g} × 1 GiB device gives each node" in message
    assert refused_for in message and "Fix: memory_fraction ≥" in message


def test_fit_finds_a_batch_for_a_users_function_and_twice_it_does_not_run(
    shared_ray, tmp_path, capsys
):
    out = tmp_path / "fit.json"
    own = f"{__name__}:cnn_fn"
    # the batch dominates its memory (0.82 MB a sample over 83 MB: peaks 290 MB at 256, 394
    # at 384, 502 at 512 of 537 MB), so twice the largest is well past the budget: 3 trials
    assert main(["fit", "--train-fn", own, "--device", "cpu",
                 "--memory-fraction", "0.05", "--batch-size", "256", "--resolution", "128",
                 "--train-config", "width=64", "--train-config", "size=32",
                 "--out", str(out)]) == 0  # fmt: skip
    assert "largest batch per node that fits" in capsys.readouterr().out
    largest = json.loads(out.read_text())["largest_batch"]
    assert largest >= 256
    twice = raysim.load_config(
        device="cpu", memory_fraction=0.05, batch_size=2 * largest, num_epochs=1,
        train_config={"width": 64, "size": 32}, run_dir=str(tmp_path), run_name="twice",
    )  # fmt: skip
    with pytest.raises(raysim.RunFailedError, match="ran out of its memory partition"):
        raysim.run(twice, train_fn=cnn_fn, out=None)


def unprepared_fn(config):
    """Never calls prepare: reports once through raysim, once through plain Ray Train."""
    import ray.train

    worker.report({"epoch": 1, "loss": 1.0})
    ray.train.report({"loss": 0.5})


@pytest.fixture(scope="module")
def unprepared_run(shared_ray, tmp_path_factory):
    cfg = raysim.load_config(
        num_nodes=2, num_epochs=2, device="cpu", image_size=16,
        run_dir=str(tmp_path_factory.mktemp("unprepared")), run_name="unprepared",
    )  # fmt: skip
    return raysim.run(cfg, train_fn=unprepared_fn, out=None)


def test_a_function_without_prepare_is_told_what_is_off(unprepared_run):
    result = unprepared_run
    notices = [r for r in read_lines(result.run_dir / "metrics.jsonl") if r["kind"] == "notice"]
    assert len(notices) == 1
    assert "worker.prepare" in notices[0]["text"] and "memory partition" in notices[0]["text"]


def test_the_console_shows_raysims_columns_then_the_users_keys(cnn_run):
    _, console = cnn_run
    line = next(line for line in console.splitlines() if line.startswith("epoch "))
    assert "samples/s" in line and " ms" in line and "loss " in line
    assert "e+0" not in line, "bytes are shown as MB, not in exponent form"


def test_custom_function_runs_through_the_cli_at_two_nodes(shared_ray, cnn_run, tmp_path):
    """The CLI's --train-fn loads the module's function and runs it on two nodes (at one
    node: raysim fit's trials, in the test above)."""
    with actors_started() as actors:
        assert main(["run", "--train-fn", "examples.custom_train_loop:train_fn",
                     "--num-nodes", "2", "--num-epochs", "2", "--batch-size", "32",
                     "--learning-rate", "1e-2", "--gpu-fraction", "0.25",
                     "--memory-fraction", "0.25", "--image-size", "16", "--device", "cpu",
                     "--run-dir", str(tmp_path), "--run-name", "cli"]) == 0  # fmt: skip
    check_run_actors(actors, 2)
    run_dir = tmp_path / "cli"
    records = read_lines(run_dir / "metrics.jsonl")
    ranks = [r for r in records if r["kind"] == "rank"]
    assert {(r["epoch"], r["rank"]) for r in ranks} == {(e, r) for e in (1, 2) for r in range(2)}
    for rank in ranks:  # the user's keys, and raysim's own measurements beside them
        assert 0 <= rank["accuracy"] <= 1 and rank["loss"] > 0
        assert rank["node_id"] == f"node-{rank['rank']}" and rank["world_size"] == 2
        assert rank["interval_s"] > 0
        # prepare() put the node under its budget: the guard reports against it
        assert rank["memory_budget_bytes"] == int(0.25 * 10 * 2**30)
        assert 0 <= rank["memory_peak_bytes"] < rank["memory_budget_bytes"]
        # what the node held before training (not charged): Python, torch, Ray's worker
        assert 300e6 < rank["memory_baseline_bytes"] < 8e9
        assert rank["memory_headroom_bytes"] == (
            rank["memory_budget_bytes"] - rank["memory_peak_bytes"]
        )
    epochs = epoch_lines(records)
    assert [e["epoch"] for e in epochs] == [1, 2]
    mean_loss = sum(r["loss"] for r in ranks if r["epoch"] == 2) / 2
    assert epochs[1]["loss"] == pytest.approx(mean_loss)
    assert epochs[1]["accuracy"] > 0.8, "a linear rule is learnt in two epochs"

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    assert [s.value for s in events.Scalars("metrics/loss")] == pytest.approx(
        [e["loss"] for e in epochs]
    )
    # a user's function is timed to its first step too
    check_startup_adds_up(json.loads((run_dir / "summary.json").read_text()))
    comparison = raysim.compare([run_dir, cnn_run[0].run_dir])
    assert [r["status"] for r in comparison["runs"]] == ["finished", "finished"]


def test_bad_train_fn_flag_is_a_clear_error():
    done = subprocess.run(
        [sys.executable, "-m", "raysim.cli", "run", "--train-fn", "examples.nope:train"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--train-fn examples.nope:train" in done.stderr and "module:function" in done.stderr


def test_a_plain_ray_train_report_is_recorded(unprepared_run):
    result = unprepared_run
    ranks = [r for r in read_lines(result.run_dir / "metrics.jsonl") if r["kind"] == "rank"]
    assert sorted((r["epoch"], r["rank"], r["loss"]) for r in ranks) == [
        (1, 0, 1.0), (1, 1, 1.0), (2, 0, 0.5), (2, 1, 0.5),
    ]  # fmt: skip
    assert [e["loss"] for e in result.epochs] == [1.0, 0.5]


def test_prepare_gives_ddp_the_plans_buckets(cnn_run):
    from raysim.plan.resources import WHOLE_MODEL_BUCKET_MB

    result, _ = cnn_run
    ranks = rank_lines(read_lines(result.run_dir / "metrics.jsonl"))
    assert len(ranks) == 4 and {(r["bucket_bytes_cap"], r["views"]) for r in ranks} == {
        (int(WHOLE_MODEL_BUCKET_MB * 2**20), True)
    }
