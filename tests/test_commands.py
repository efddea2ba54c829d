"""The `raysim` subcommands on a real run, through the command's own entry point (in this
process, on the shared Ray): run, --resume, project (fit: tests/test_own_training.py)."""

import json

import pytest

from raysim.cli import main
from raysim.rundir import epoch_lines, read_lines

pytestmark = pytest.mark.slow

TINY = ["--device", "cpu", "--image-size", "16", "--batch-size", "8"]


def test_run_then_resume_then_project(shared_ray, tmp_path, capsys):
    args = ["run", *TINY, "--num-nodes", "2", "--num-epochs", "1", "--max-steps-per-epoch", "4",
            "--checkpoint-every", "1", "--run-dir", str(tmp_path), "--run-name", "r"]  # fmt: skip
    assert main(args) == 0
    run_dir = tmp_path / "r"
    assert main(["run", "--resume", str(run_dir), "--num-epochs", "2"]) == 0
    epochs = epoch_lines(read_lines(run_dir / "metrics.jsonl"))
    assert [e["epoch"] for e in epochs] == [1, 2], "epoch 1 from the checkpoint, then 2"
    assert "continue" not in capsys.readouterr().err

    out = tmp_path / "projection.json"
    nodes = "1,4,64"
    assert main(["project", str(run_dir), "--network", "1gbe", "--nodes", nodes,
                 "--out", str(out)]) == 0  # fmt: skip
    shown = capsys.readouterr().out
    assert "r projected onto machines of 1 GPU(s)" in shown and "efficiency" in shown
    assert "1gbe (0.068 GB/s achieved, line rate 0.125 GB/s" in shown
    rows = json.loads(out.read_text())
    assert [row["nodes"] for row in rows] == [1, 4, 64]
    assert rows[0]["efficiency"] == pytest.approx(1.0)
    # ResNet18's 45 MB over 1 GbE as achieved: at least the bandwidth term of one ring
    assert rows[1]["comm_s"] > 2 * 3 / 4 * 44.7e6 / 0.068e9 * 0.99
    assert rows[2]["efficiency"] < rows[1]["efficiency"] < 1
