"""Documented switches, each run for real: jitter, gradient compression, an unenforced
budget, start weights, loader processes; and stragglers for a user's own function."""

import sys
from pathlib import Path

import pytest
import torch

import raysim
from raysim.builtin.model import build_model
from raysim.rundir import rank_lines, read_lines

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.custom_train_loop import train_fn  # noqa: E402

pytestmark = pytest.mark.slow


def ranks_of(result):
    return rank_lines(read_lines(result.run_dir / "metrics.jsonl"))


def quick(tiny_config, name, **overrides):
    values = {"num_epochs": 1, "max_steps_per_epoch": 4, "run_name": name, **overrides}
    return tiny_config(**values)


def test_jitter_and_stragglers_reach_a_users_function_through_prepare(shared_ray, tiny_config):
    """The emulation acts on the prepared model, so a user's loop straggles as the built-in."""
    cfg = quick(
        tiny_config, "straggle", num_nodes=2, stragglers={1: 10.0}, jitter=0.5, batch_size=64
    )
    ranks = ranks_of(raysim.run(cfg, train_fn=train_fn, out=None))
    by_rank = {r["rank"]: r for r in ranks}
    # rank 0 only jitters (0 to 0.5 × its compute), rank 1 sleeps 9× its compute on top
    assert by_rank[0]["straggler_sleep_s_per_step"] > 0
    assert by_rank[1]["straggler_sleep_s_per_step"] > 4 * by_rank[0]["straggler_sleep_s_per_step"]
    assert all(r["allreduce_wait_s_per_step"] > 0 for r in ranks), "the hook measured the wait"


def cfg_dir(cfg):
    return Path(cfg.run_dir) / cfg.run_name


def test_fp16_compression_runs_on_the_wire_and_keeps_the_ranks_equal(shared_ray, tiny_config):
    plain = raysim.run(quick(tiny_config, "fp32", num_nodes=2), out=None)
    half = raysim.run(quick(tiny_config, "fp16", num_nodes=2, grad_compression="fp16"), out=None)
    assert half.summary["checksums_match"] and plain.summary["checksums_match"]
    # fp16 on the wire rounds the averaged gradients: the weights differ from fp32's
    assert half.epochs[-1]["param_checksum"] != plain.epochs[-1]["param_checksum"]
    assert all(r["allreduce_wait_s_per_step"] > 0 for r in ranks_of(half))
    assert abs(half.epochs[-1]["train_loss"] - plain.epochs[-1]["train_loss"]) < 0.1


def test_an_unenforced_budget_is_measured_not_enforced(shared_ray, tiny_config):
    """53 MB is below the model's 134 MB of training state: refused when enforced."""
    with pytest.raises(raysim.ConfigError, match="memory_fraction ≥ 0.02"):
        raysim.run(quick(tiny_config, "enforced", memory_fraction=0.005), out=None)
    result = raysim.run(
        quick(tiny_config, "measured", memory_fraction=0.005, enforce_memory=False), out=None
    )
    (node,) = result.summary["nodes"]
    assert node["memory_budget_bytes"] == int(0.005 * 10 * 2**30)
    assert node["memory_peak_bytes"] > 2 * node["memory_budget_bytes"]


def test_start_weights_load_and_loader_processes_deliver_the_same_batches(
    shared_ray, tiny_config, tmp_path
):
    """Against one plain run: ImageNet-shaped weights (1000 classes) load into the backbone
    (the 10-class head is new), and a loader process gives the very same weights."""
    torch.manual_seed(123)
    path = tmp_path / "resnet18.pth"
    torch.save(build_model(1000).state_dict(), path)
    plain = raysim.run(quick(tiny_config, "plain"), out=None).epochs[-1]["param_checksum"]
    loaded = raysim.run(quick(tiny_config, "loaded", weights_path=str(path)), out=None)
    assert loaded.epochs[-1]["param_checksum"] != plain
    forked = raysim.run(quick(tiny_config, "forked", num_workers_per_loader=1), out=None)
    assert forked.epochs[-1]["param_checksum"] == plain
    missing = quick(tiny_config, "missing", weights_path=str(tmp_path / "nowhere.pth"))
    with pytest.raises(FileNotFoundError, match=r"weights_path .*nowhere.pth does not exist"):
        raysim.run(missing, out=None)
    assert not cfg_dir(missing).exists(), "refused before the run directory is made"
