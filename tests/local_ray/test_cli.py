"""The command line and the original project's scripts, run as a user runs them; the
`raysim` console script on a real run, then the subcommands on that run through the command's
own entry point (in this process, on the shared Ray): --resume, project (fit:
test_own_training.py)."""

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from raysim.cli import main
from raysim.rundir import epoch_lines, read_lines

ROOT = Path(__file__).resolve().parents[2]


def run_script(*args, timeout=120):
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def resolved(*args):
    done = run_script(*args, "--print-config")
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_launcher_single_mode_is_one_node_from_the_single_config():
    cfg = resolved("examples/launcher.py", "--mode", "single")
    assert (cfg["num_nodes"], cfg["batch_size"], cfg["num_epochs"]) == (1, 8, 100)


def test_launcher_distributed_flags_map_to_config():
    cfg = resolved(
        "examples/launcher.py", "--mode", "distributed", "--num-epochs", "3",
        "--num-nodes", "4", "--batch-size", "8",
    )  # fmt: skip
    assert (cfg["num_nodes"], cfg["num_epochs"], cfg["batch_size"]) == (4, 3, 8)


def test_original_train_scripts_accept_their_flags():
    single = resolved(
        "examples/train_single.py", "--num-epochs=100", "--batch-size", "8",
        "--memory-fraction", "0.20",
    )  # fmt: skip
    assert (single["num_nodes"], single["memory_fraction"]) == (1, 0.20)
    dist = resolved(
        "examples/train_distributed.py", "--num-nodes", "4", "--num-epochs=100",
        "--batch-size", "8", "--memory-fraction", "0.20",
    )  # fmt: skip
    assert (dist["num_nodes"], dist["num_epochs"], dist["memory_fraction"]) == (4, 100, 0.20)


def test_impossible_packing_fails_fast_without_starting_ray(tmp_path):
    sessions = ray_sessions()
    done = run_script(
        "-m", "raysim.cli", "run", "--config", "configs/distributed_config.yaml",
        "--gpu-fraction", "0.30", "--device", "cpu", "--run-dir", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 2
    assert "4 nodes × gpu_fraction 0.30 = 1.20 of one device" in done.stderr
    assert "at most 3 nodes fit" in done.stderr
    assert "Traceback" not in done.stderr
    assert "ray" not in done.stdout.lower()
    assert not any(tmp_path.iterdir()), "nothing is written for a config that cannot run"
    assert ray_sessions() == sessions, "refused before any Ray started"


def ray_sessions() -> set[Path]:
    """Ray's session directories: each Ray started on this machine makes one."""
    return set(Path(tempfile.gettempdir(), "ray").glob("session_2*"))


def test_config_typo_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("num_nodes: 2\nmemory_fracton: 0.2\n")
    done = run_script("-m", "raysim.cli", "run", "--config", str(bad))
    assert done.returncode == 2
    assert "unknown key 'memory_fracton': did you mean 'memory_fraction'?" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "command", [("-m", "raysim.cli", "run"), ("examples/launcher.py", "--mode", "single")]
)
def test_an_abbreviated_flag_is_told_not_taken(command):
    done = run_script(*command, "--num-node", "4", "--print-config")
    assert done.returncode == 2
    assert "unrecognized arguments: --num-node 4" in done.stderr
    assert "Traceback" not in done.stderr


def test_unwritable_run_dir_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = run_script(
        "-m", "raysim.cli", "run", "--num-nodes", "1", "--device", "cpu",
        "--run-dir", str(blocker / "runs"),
    )  # fmt: skip
    assert done.returncode == 2
    assert "cannot write the run directory" in done.stderr and "run_dir" in done.stderr


def test_resume_of_a_folder_that_is_not_a_run_names_it(tmp_path):
    done = run_script("-m", "raysim.cli", "run", "--resume", str(tmp_path))
    assert done.returncode == 2
    assert f"--resume {tmp_path}: not a raysim run directory (no config.yaml)" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_train_fn_that_does_not_import_is_one_clear_line(tmp_path):
    (tmp_path / "broken_loop.py").write_text("import torch\nraise RuntimeError('half-written')\n")
    (tmp_path / "fine_loop.py").write_text("def train(config):\n    pass\n")
    cases = {
        "broken_loop:train": "cannot import 'broken_loop' (RuntimeError: half-written)",
        "no_such_module:train": "cannot import 'no_such_module' (ModuleNotFoundError",
        "fine_loop:trian": "fine_loop has no function 'trian'",
        "fine_loop": "not of the form module:function",
    }
    for spec, expected in cases.items():
        done = subprocess.run(
            [sys.executable, "-m", "raysim.cli", "run", "--train-fn", spec, "--device", "cpu"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 2, (spec, done.stderr)
        assert expected in done.stderr, (spec, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 2


def test_project_on_a_folder_that_is_not_a_run_names_it(tmp_path):
    done = run_script("-m", "raysim.cli", "project", str(tmp_path))
    assert done.returncode == 2
    assert f"{tmp_path} is not a raysim run directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_project_on_a_run_without_model_facts_names_what_is_missing(tmp_path):
    """A run made before raysim recorded model facts (or that finished no step)."""
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("num_nodes: 2\nbatch_size: 8\n")
    (run_dir / "summary.json").write_text('{"status": "finished"}')
    rank = {"kind": "rank", "epoch": 1, "rank": 0, "step_time_s": 0.1}
    (run_dir / "metrics.jsonl").write_text(json.dumps(rank) + "\n")
    done = run_script("-m", "raysim.cli", "project", str(run_dir))
    assert done.returncode == 2
    assert f"{run_dir} has no model facts (summary.json has no 'model'" in done.stderr
    assert "Traceback" not in done.stderr


def test_train_config_flags_merge_over_the_yaml_block(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("num_nodes: 2\ntrain_config:\n  width: 32\n  layers: 2\n")
    cfg = resolved("-m", "raysim.cli", "run", "--config", str(config),
                   "--train-config", "width=64", "--train-config", "dropout=0.1")  # fmt: skip
    assert cfg["train_config"] == {"width": 64, "layers": 2, "dropout": 0.1}
    done = run_script("-m", "raysim.cli", "run", "--train-config", "width")
    assert done.returncode == 2 and "'width' is not key=value" in done.stderr


@pytest.mark.slow
def test_the_console_script_then_resume_then_project(shared_ray, tmp_path, capsys):
    """The console script with its own (cold) Ray: progress lines, summary, run directory;
    then, in this process on the shared Ray, `run --resume` for one more epoch from its
    checkpoint, and `project` of the result."""
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "raysim"), "run",
            "--config", "configs/distributed_config.yaml", "--num-nodes", "2",
            "--num-epochs", "1", "--max-steps-per-epoch", "3", "--image-size", "16",
            "--checkpoint-every", "1", "--device", "cpu", "--run-dir", str(tmp_path),
            "--run-name", "r",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    progress = re.findall(r"^epoch\s+(\d+/\d+)\s+nodes 2\s+loss", done.stdout, re.MULTILINE)
    assert progress == ["1/1"]
    assert "final test accuracy" in done.stdout and "node-1" in done.stdout
    run_dir = tmp_path / "r"
    assert {"config.yaml", "metrics.jsonl", "summary.json"} <= {p.name for p in run_dir.iterdir()}
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["num_nodes"] == 2

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
