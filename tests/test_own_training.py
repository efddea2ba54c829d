"""A user's own model and loop get every raysim feature through the same public calls:
measured steps, model facts, the memory floor, fit, project, train_config, the console."""

import json
import re
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
from raysim.rundir import rank_lines, read_lines

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.transformer_lm import train_fn as lm_train_fn  # noqa: E402

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
    """Plain PyTorch: prepare, then an ordinary loop; no other raysim call."""
    settings = config["train_config"]
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(2048, 3, 16, 16), torch.randint(0, 10, (2048,)))
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
        worker.report({"epoch": epoch, "loss": loss.item(), "seen": settings.get("width", 0)})


def test_profile_steps_write_every_nodes_trace_for_a_users_function(shared_ray, tiny_config):
    cfg = tiny_config(num_nodes=2, num_epochs=1, run_name="profiled", profile_steps=2,
                      batch_size=32)  # fmt: skip
    result = raysim.run(cfg, train_fn=cnn_fn, out=None)
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


def test_a_users_cnn_gets_steps_model_facts_and_its_own_train_config(shared_ray, tiny_config):
    cfg = tiny_config(num_nodes=2, run_name="cnn", train_config={"width": 8}, batch_size=16)
    result = raysim.run(cfg, train_fn=cnn_fn, out=None)
    ranks = rank_lines(read_lines(result.run_dir / "metrics.jsonl"))
    assert len(ranks) == 4
    for rank in ranks:
        assert rank["step_time_s"] > 0 and rank["samples_per_s"] > 0
        assert rank["optimizer_steps"] == 2048 // 2 // 16
        assert rank["measured_samples"] == 1024
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


def test_a_slow_network_adds_at_least_the_modelled_time_for_that_models_bytes(
    shared_ray, tiny_config
):
    """The transformer's gradients over 1 GbE, against loopback, side by side."""
    steps, paths = {}, {}
    for network in ("loopback", "1gbe"):
        cfg = tiny_config(num_nodes=2, run_name=network, network=network, num_epochs=1,
                          max_steps_per_epoch=6, batch_size=4, learning_rate=1e-3,
                          train_config={"sequences": 256, "width": 256})  # fmt: skip
        result = raysim.run(cfg, train_fn=lm_train_fn, out=None)
        steps[network] = min(r["step_time_s"] for r in rank_lines(read_lines(
            result.run_dir / "metrics.jsonl")))  # fmt: skip
        model = result.summary["model"]
        paths[network] = result.summary["allreduce"]
    assert paths == {"loopback": "shared memory", "1gbe": "gloo"}
    modelled = allreduce_seconds(model["gradient_bytes"], 2, PRESETS["1gbe"])
    assert model["name"] == "TinyLM"
    assert steps["1gbe"] - steps["loopback"] >= 0.5 * modelled, (steps, modelled)


def test_project_uses_the_runs_own_model_and_step(shared_ray, tiny_config, tmp_path, capsys):
    cfg = tiny_config(
        num_nodes=2, run_name="lm", num_epochs=2, max_steps_per_epoch=4, batch_size=8,
        learning_rate=1e-3, train_config={"sequences": 128},
    )  # fmt: skip
    run_dir = raysim.run(cfg, train_fn=lm_train_fn, out=None).run_dir
    out = tmp_path / "p.json"
    assert main(["project", str(run_dir), "--network", "1gbe", "--nodes", "1,2",
                 "--out", str(out)]) == 0  # fmt: skip
    rows = json.loads(out.read_text())
    model = json.loads((run_dir / "summary.json").read_text())["model"]
    # the transformer's own bytes, in DDP's default buckets, between 2 machines on 1 GbE
    two = Topology(2, 1, INTRA_LINKS["nvlink"], NETWORK_LINKS["1gbe"])
    expected = sum(allreduce_cost(b, two)[0] for b in model["default_buckets_bytes"])
    assert rows[1]["comm_s"] == pytest.approx(expected)
    assert model["gradient_bytes"] < 5e6, "not ResNet18's 45 MB"
    # the readiness the run measured feeds the projection
    ready = model["default_bucket_ready_fraction"]
    assert len(ready) == len(model["default_buckets_bytes"]) and 0 <= min(ready) <= max(ready) <= 1
    assert ready[-1] == pytest.approx(1.0) and 0 < model["backward_s"] < 10
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
    assert main(["fit", "--train-fn", "tests.test_own_training:cnn_fn", "--device", "cpu",
                 "--memory-fraction", "0.02", "--batch-size", "64", "--resolution", "64",
                 "--train-config", "width=64", "--out", str(out)]) == 0  # fmt: skip
    assert "largest batch per node that fits" in capsys.readouterr().out
    largest = json.loads(out.read_text())["largest_batch"]
    assert largest >= 64
    twice = raysim.load_config(
        device="cpu", memory_fraction=0.02, batch_size=2 * largest, num_epochs=1,
        train_config={"width": 64}, run_dir=str(tmp_path), run_name="twice",
    )  # fmt: skip
    with pytest.raises(raysim.RunFailedError, match="ran out of its memory partition"):
        raysim.run(twice, train_fn=cnn_fn, out=None)


def no_prepare_fn(config):
    worker.report({"epoch": 1, "loss": 0.5})


def test_a_function_without_prepare_is_told_what_is_off(shared_ray, tiny_config):
    cfg = tiny_config(num_nodes=2, run_name="unprepared", num_epochs=1)
    result = raysim.run(cfg, train_fn=no_prepare_fn, out=None)
    notices = [r for r in read_lines(result.run_dir / "metrics.jsonl") if r["kind"] == "notice"]
    assert len(notices) == 1
    assert "worker.prepare" in notices[0]["text"] and "memory partition" in notices[0]["text"]


def test_the_console_shows_raysims_columns_then_the_users_keys(shared_ray, tiny_config):
    import io

    out = io.StringIO()
    cfg = tiny_config(num_nodes=2, run_name="console", num_epochs=1, train_config={"width": 8})
    raysim.run(cfg, train_fn=cnn_fn, out=out)
    line = next(line for line in out.getvalue().splitlines() if line.startswith("epoch "))
    assert "samples/s" in line and " ms" in line and "loss " in line
    assert "e+0" not in line, "bytes are shown as MB, not in exponent form"
