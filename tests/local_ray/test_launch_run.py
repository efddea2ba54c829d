"""raysim launch on real Ray and gloo: the example torchrun script gives torchrun's final
weights with raysim's measurements, even restarted after an injected crash; the emulated
link acts on the script's own DDP; a budget below its gradients, an exception, a non-zero
exit fail in the node's words; a module's own ray.train.report is recorded, in the user's
directory and torchrun's env."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from raysim.cli import main
from raysim.config import PRESETS
from raysim.config.script import ScriptSpec
from raysim.projection.comm_model import allreduce_seconds
from raysim.rundir import epoch_lines, rank_lines, read_lines
from raysim.worker.launchers.node import NodeError
from raysim.worker.launchers.script import run_script
from tests.run_checks import check_link_acts

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "torchrun_ddp.py"


def launch(tmp_path: Path, name: str, *argv: str) -> int:
    return main(["launch", "--device", "cpu", "--num-nodes", "2", "--run-dir", str(tmp_path),
                 "--run-name", name, *argv])  # fmt: skip


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


WIDE = 32768
"""A hidden layer this wide gives 4.6 MB of gradients: an all-reduce 1 GbE visibly slows."""


CRASH = "worker_crash:rank=1,epoch=2,step=3"
"""Injected into the loopback launch: rank 1's 3rd optimizer step (of 16) of epoch 2."""
CRASHED = {"loopback": True, "1gbe": False}


@pytest.fixture(scope="module")
def wide_runs(shared_ray, tmp_path_factory):
    """The example at width WIDE under torchrun, then under raysim launch on loopback (with
    CRASH, max_failures 1) and on 1 GbE (their weights saved): one set of runs for the
    weights, facts, restart and link tests."""
    tmp_path = tmp_path_factory.mktemp("launch")
    script_args = ["--epochs", "2", "--samples", "1024", "--hidden", str(WIDE)]
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", str(EXAMPLE),
         *script_args, "--save", str(tmp_path / "torchrun.pt")],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    for network, crashed in CRASHED.items():
        faults = ["--inject", CRASH, "--max-failures", "1"] if crashed else []
        with contextlib.redirect_stdout(io.StringIO()) as console:  # what capsys would see
            assert launch(tmp_path, network, "--network", network, *faults, str(EXAMPLE),
                          *script_args, "--save", str(tmp_path / f"{network}.pt")) == 0  # fmt: skip
        (tmp_path / f"{network}.console").write_text(console.getvalue())
    return tmp_path


def test_the_torchrun_example_gives_torchruns_weights_with_raysims_measurements(wide_runs):
    theirs, ours = torch.load(wide_runs / "torchrun.pt"), torch.load(wide_runs / "loopback.pt")
    assert theirs.keys() == ours.keys()
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=1e-6)

    run_dir = wide_runs / "loopback"
    facts = summary(run_dir)
    assert facts["status"] == "finished" and facts["program"] == f"script:{EXAMPLE}"
    assert facts["step_time_s"] > 0 and facts["samples_per_s"] > 0
    parameters = 32 * WIDE + WIDE + WIDE * 2 + 2
    assert facts["model"]["trainable_parameters"] == parameters
    assert facts["model"]["gradient_bytes"] == 4 * parameters
    epochs = epoch_lines(read_lines(run_dir / "metrics.jsonl"))
    assert [e["epoch"] for e in epochs] == [1, 2]  # the sampler's set_epoch made them
    assert all(e["measured_samples"] == 1024 and e["steps"] == 16 for e in epochs)
    assert epochs[1]["train_loss"] < epochs[0]["train_loss"]

    for network, crashed in CRASHED.items():  # the script's own print: rank 0's on the console
        out = (wide_runs / f"{network}.console").read_text()
        assert out.count("epoch 0 loss") == 1 + crashed and out.count("epoch 1 loss") == 1
        assert "[node-" not in out and "Reporting training result" not in out
        assert "epoch 1 loss" in (wide_runs / network / "output" / "node-0.log").read_text()
        assert (wide_runs / network / "output" / "node-1.log").exists()


def test_the_emulated_link_acts_on_the_scripts_ddp(wide_runs):
    """The script's own DDP buckets go through the link's hook, in the second epoch (no
    first step in it): over 1 GbE held to the modelled all-reduce of the model's gradients
    (1 GbE's step was 5.7x loopback's in one CI run, 3.4x alone); on loopback nothing added."""
    model = summary(wide_runs / "1gbe")["model"]
    ranks = {
        network: [r for r in rank_lines(read_lines(wide_runs / network / "metrics.jsonl"))
                  if r["epoch"] == 2]
        for network in ("loopback", "1gbe")
    }  # fmt: skip
    check_link_acts(ranks, allreduce_seconds(model["gradient_bytes"], 2, PRESETS["1gbe"]))


def test_a_budget_below_the_scripts_gradients_is_refused_naming_the_node(
    shared_ray, tmp_path, capsys
):
    code = launch(tmp_path, "floor", "--memory-fraction", "0.001", "--device-memory-gb", "1",
                  str(EXAMPLE), "--hidden", "16384")  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    node = re.search(r"--- (node-\d \(rank \d\)) ---", err).group(1)
    told = err.split(f"--- {node} ---\n")[1].splitlines()
    assert told[0].startswith(f"{node}: memory_fraction 0.001 × 1 GiB device gives each node 1 MB")
    assert "but the model's gradients alone take 2 MB" in told[0]
    assert "Fix: memory_fraction ≥" in told[0]
    assert "Traceback" not in err, "one line, no raysim traceback"


def test_fit_finds_the_scripts_batch_through_its_own_option(shared_ray, tmp_path, capsys):
    """Each trial is the script launched on one node with --batch-size set on its command
    line, ended after TRIAL_STEPS optimizer steps. At width 65536 a sample's activations
    take about 1 MB: batch 128 peaked near 100 MB of the 215 MB budget, 256 ran out."""
    out = tmp_path / "fit.json"
    assert main(["fit", "--device", "cpu", "--device-memory-gb", "1", "--memory-fraction", "0.2",
                 "--resolution", "128", "--out", str(out), "--batch-option", "batch-size",
                 str(EXAMPLE), "--hidden", "65536", "--samples", "8192",
                 "--batch-size", "128"]) == 0  # fmt: skip
    assert "largest batch per node that fits" in capsys.readouterr().out
    fit = json.loads(out.read_text())
    trials = [(t["batch_size"], t["fits"], t["ran_out"]) for t in fit["trials"]]
    assert trials == [(128, True, False), (256, False, True)]
    assert (fit["batch_size"], fit["largest_batch"]) == (128, 128), "the script's batch"


def test_an_exception_and_a_non_zero_exit_fail_in_the_scripts_words(shared_ray, tmp_path, capsys):
    script = tmp_path / "fails.py"
    script.write_text(
        "import os, sys\n\n"
        "print('started', os.environ['RANK'])\n"
        "if os.environ['RANK'] == '1':\n"
        "    raise KeyError('no such column')\n"
        "sys.exit(int(sys.argv[1]))\n"
    )
    assert launch(tmp_path, "raised", "--all-ranks", str(script), "0") == 1
    captured = capsys.readouterr()
    assert "[node-0] started 0" in captured.out and "[node-1] started 1" in captured.out
    assert "node-1: the script raised KeyError: 'no such column'" in captured.err
    assert f'File "{script}", line 5, in <module>' in captured.err
    assert "raysim/worker" not in captured.err and "runpy" not in captured.err
    assert "started 1" in (tmp_path / "raised" / "output" / "node-1.log").read_text()

    # The non-zero exit in the node's launcher, in this process: a second launch would tell
    # its NodeError as the launch above told rank 1's (one launch cannot fail both ways: Ray
    # Train ends the group at the first poll that sees a failure).
    script.write_text("import sys\nsys.exit(3)\n")
    with pytest.raises(NodeError, match="^node-0: the script exited with status 3$"):
        run_script(ScriptSpec(target=str(script)), str(script), "node-0")


def test_a_modules_own_reports_are_recorded_in_the_users_directory(
    shared_ray, tmp_path, monkeypatch
):
    (tmp_path / "reporter.py").write_text(
        "import json, os, sys\n"
        "import ray.train\n"
        "import torch\n"
        "import torch.distributed as dist\n\n"
        "dist.init_process_group('nccl')\n"
        "model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 2))\n"
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "for _ in range(3):\n"
        "    optimizer.zero_grad()\n"
        "    model(torch.randn(8, 4)).sum().backward()\n"
        "    optimizer.step()\n"
        "keys = ('RANK', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'NODE_RANK', 'WORLD_SIZE')\n"
        "env = {key: os.environ[key] for key in keys}\n"
        "open(f'env-{env[\"RANK\"]}.json', 'w').write(json.dumps([env, sys.argv[1:]]))\n"
        "ray.train.report({'epoch': 1, 'my_metric': 1.5})\n"
        "dist.destroy_process_group()\n"
    )
    monkeypatch.chdir(tmp_path)
    assert launch(tmp_path, "module", "-m", "reporter", "--flag", "x") == 0
    for rank in (0, 1):
        env, argv = json.loads((tmp_path / f"env-{rank}.json").read_text())
        assert env == {"RANK": str(rank), "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
                       "NODE_RANK": str(rank), "WORLD_SIZE": "2"}  # fmt: skip
        assert argv == ["--flag", "x"]
    epochs = epoch_lines(read_lines(tmp_path / "module" / "metrics.jsonl"))
    assert len(epochs) == 1 and epochs[0]["my_metric"] == 1.5
    assert epochs[0]["measured_samples"] == 2 * 3 * 8 and epochs[0]["step_time_s"] > 0
    told = (tmp_path / "module" / "output" / "node-0.log").read_text()
    assert "the script asked for nccl" in told and told.count("asked for nccl") == 1


def test_an_injected_crash_at_a_scripts_step_restarts_the_script(wide_runs):
    """CRASH on the loopback launch; max_failures 1 restarts the script from its start, as
    torchrun's --max-restarts does (it keeps no checkpoint): its weights are still
    torchrun's (test_the_torchrun_example_gives_torchruns_weights_with_raysims_measurements)."""
    run_dir = wide_runs / "loopback"
    records = read_lines(run_dir / "metrics.jsonl")
    kinds = [r.get("kind") for r in records]
    assert kinds.count("error") == 1 and kinds.count("recovered") == 1
    error = next(r for r in records if r.get("kind") == "error")
    assert [(f["kind"], f["rank"], f["epoch"], f["step"]) for f in error["faults"]] == [
        ("worker_crash", 1, 2, 3)
    ]
    assert [e["epoch"] for e in epoch_lines(records)] == [1, 2]
    assert summary(run_dir)["status"] == "finished"
    assert (run_dir / "output" / "node-0.log").read_text().count("epoch 0 loss") == 2
    others = read_lines(wide_runs / "1gbe" / "metrics.jsonl")
    assert not [r for r in others if r.get("kind") in ("error", "recovered")], "only loopback's"
