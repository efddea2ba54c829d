"""raysim launch without Ray: the command line as torchrun reads it, each bad script
refused in one line before Ray starts, the script's environment, exits and tracebacks,
when its metrics lines are made, and its output on the console."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import torch

import raysim
from raysim.cli import build_parser, main, split_launch
from raysim.config.script import ScriptError, ScriptSpec, option_value, script_spec, with_option
from raysim.console.script_output import ScriptOutputFollower
from raysim.fit import TRIAL_STEPS, ScriptTrials
from raysim.worker.launchers.node import NodeError
from raysim.worker.launchers.script import exit_failure, run_script, torchrun_env
from raysim.worker.launchers.script_hooks import Patches, ScriptReports
from raysim.worker.node_context import NodeContext

ROOT = Path(__file__).resolve().parents[2]


def launch_argv(*argv: str):
    parser = build_parser()
    return parser.parse_args(split_launch(parser, ["launch", *argv]))


def test_everything_after_the_script_is_the_scripts_as_torchrun_reads_it():
    args = launch_argv("--num-nodes", "2", "--network=1gbe", "t.py", "--lr", "0.1", "-m", "x")
    assert (args.num_nodes, args.network) == (2, "1gbe")
    assert args.script_argv == ["--", "t.py", "--lr", "0.1", "-m", "x"]
    args = launch_argv("--all-ranks", "-m", "pkg.train", "--num-nodes", "8")
    assert args.all_ranks and args.num_nodes is None
    assert args.script_argv == ["--", "-m", "pkg.train", "--num-nodes", "8"]
    spec = script_spec(["-m", "pkg.train", "--epochs", "3"])
    assert (spec.target, spec.module, spec.args) == ("pkg.train", True, ("--epochs", "3"))
    assert script_spec(["t.py"]).target == str(Path("t.py").resolve())


@pytest.mark.parametrize(
    ("source", "argv", "said"),
    [
        (None, ["missing.py"], "launch: no script at {dir}/missing.py"),
        ("import torch.multiprocessing as mp\n\n\nmp.spawn(print, nprocs=2)\n", ["s.py"],
         "launch: {dir}/s.py calls mp.spawn (line 4); raysim launch starts one process per "
         "node as torchrun does: use the torchrun style"),
        ("from torch.multiprocessing import spawn as go\ngo(print, nprocs=2)\n", ["s.py"],
         "launch: {dir}/s.py calls mp.spawn (line 2)"),
        ("def main(:\n    pass\n", ["s.py"],
         "launch: {dir}/s.py does not compile: SyntaxError: invalid syntax (line 1)"),
        (None, ["-m", "no_such_module_here"], "launch -m no_such_module_here: no such module"),
        (None, [], "launch: give the script to run"),
    ],
)  # fmt: skip
def test_a_bad_script_is_refused_in_one_line_before_ray(
    tmp_path, monkeypatch, capsys, source, argv, said
):
    monkeypatch.chdir(tmp_path)
    if source is not None:
        (tmp_path / "s.py").write_text(source)
    assert main(["launch", "--device", "cpu", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("raysim: error: " + said.format(dir=tmp_path)), err
    assert err.count("\n") == 1, err
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_fit_sets_the_scripts_batch_option_where_it_gives_it_else_at_the_end():
    args = ("--lr", "0.1", "--batch-size", "8", "--batch-size=16", "--epochs", "2")
    assert option_value(args, "--batch-size") == "16", "the last, as argparse keeps"
    assert with_option(args, "--batch-size", 64)[3:6] == ("8", "--batch-size=64", "--epochs")
    assert with_option(("--batch-size", "8"), "--batch-size", 64) == ("--batch-size", "64")
    assert with_option(("--lr", "1"), "--batch-size", 64) == ("--lr", "1", "--batch-size", "64")
    assert option_value(("--batch-size",), "--batch-size") is None, "no value: not given"
    trials = ScriptTrials(script_spec(["t.py", "--batch-size", "32"]), "--batch-size")
    assert trials.given_batch() == 32
    trial = trials.at(128)
    assert (trial.args, trial.stop_after_steps) == (("--batch-size", "128"), TRIAL_STEPS)


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--batch-option", "batch-size"], "fit --batch-option: give the script after it"),
        (["t.py", "--lr", "1"], "fit: name the script's batch-size option"),
        (["--train-fn", "m:f", "--batch-option", "b", "t.py"],
         "fit: give --train-fn or a script, not both"),
        (["--batch-option", "batch-size", "absent.py"], "launch: no script at {dir}/absent.py"),
    ],
)  # fmt: skip
def test_fit_on_a_script_is_refused_in_one_line_before_ray(
    tmp_path, monkeypatch, capsys, argv, said
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.py").write_text("print('trained')\n")
    assert main(["fit", "--device", "cpu", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("raysim: error: " + said.format(dir=tmp_path)), err
    assert err.count("\n") == 1, err
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_raysim_run_takes_a_script_and_checks_it_first(tmp_path):
    cfg = raysim.load_config(device="cpu", run_dir=str(tmp_path))
    with pytest.raises(ScriptError, match="no script at"):
        raysim.run(cfg, script=[str(tmp_path / "absent.py"), "--lr", "1"], out=None)
    with pytest.raises(ValueError, match="train_fn or script"):
        raysim.run(cfg, train_fn=print, script=["x.py"], out=None)


def test_each_node_is_a_machine_with_one_device():
    ctx = NodeContext("node-1", "ray", 1, 4, torch.device("cpu"), 1, Path("."), Path("."))
    env = torchrun_env(ctx, threads=2)
    assert env["RANK"] == env["GROUP_RANK"] == env["NODE_RANK"] == "1"
    assert (env["LOCAL_RANK"], env["LOCAL_WORLD_SIZE"], env["WORLD_SIZE"]) == ("0", "1", "4")
    assert env["OMP_NUM_THREADS"] == "2"


def test_exit_zero_is_success_and_any_other_status_fails_the_node():
    assert exit_failure(0, "node-1") is None and exit_failure(None, "node-1") is None
    assert str(exit_failure(3, "node-1")) == "node-1: the script exited with status 3"
    assert str(exit_failure("bad", "node-2")) == "node-2: the script exited with status 1 (bad)"


def test_an_exception_is_the_scripts_own_traceback_headed_by_its_type_and_node(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("def go():\n    raise ValueError('boom')\n\ngo()\n")
    with pytest.raises(NodeError) as info:
        run_script(ScriptSpec(target=str(script)), str(script), "node-1")
    text = str(info.value)
    assert text.startswith("node-1: the script raised ValueError: boom\n")
    assert f'File "{script}", line 4' in text and "line 2, in go" in text
    assert "runpy" not in text and "raysim" not in text
    script.write_text("import sys\nsys.exit(0)\n")
    run_script(ScriptSpec(target=str(script)), str(script), "node-1")  # success


class Lines(ScriptReports):
    """The policy alone: which lines are made, not what they hold."""

    def report(self, metrics, checkpoint=None):
        self.sent.append(dict(metrics))
        self.steps = 0


def lines(every: int = 3) -> Lines:
    reports = Lines(session=None, send=None, every=every)  # type: ignore[arg-type]
    reports.sent = []
    return reports


def test_without_a_sampler_a_line_every_k_steps_and_the_rest_at_the_end():
    reports = lines(every=3)
    for _ in range(7):
        reports.loss(2.0)
        reports.step_done(None)
    assert [line["steps"] for line in reports.sent] == [3, 3]
    reports.finish()
    assert [(line["epoch"], line["steps"]) for line in reports.sent] == [(1, 3), (2, 3), (3, 1)]
    assert reports.sent[0]["train_loss"] == 2.0


def test_the_samplers_epochs_make_the_lines_and_the_scripts_own_reports_stop_them():
    reports = lines(every=2)
    reports.epoch_starts()  # before any step: nothing to report
    for _ in range(5):
        reports.step_done(None)
    reports.epoch_starts()  # epoch 2 starts: epoch 1's line
    reports.epoch_starts()  # a second sampler's set_epoch: no step since
    assert [line["steps"] for line in reports.sent] == [5]
    reports.by_the_script({"accuracy": 0.5})
    reports.step_done(None)
    reports.epoch_starts()
    reports.finish()
    assert reports.sent[-1] == {"accuracy": 0.5} and len(reports.sent) == 2
    quiet = lines()
    quiet.finish()  # a script that never stepped still gets its one line
    assert [line["epoch"] for line in quiet.sent] == [1]


def test_patches_are_restored_in_reverse():
    class Owner:
        value = 1

    patches = Patches()
    patches.replace(Owner, "value", 2)
    patches.replace(Owner, "value", 3)
    patches.restore()
    assert Owner.value == 1


def test_the_console_shows_rank_0_as_it_is_or_every_node_prefixed(tmp_path):
    out_dir = tmp_path / "output"
    out_dir.mkdir()
    (out_dir / "node-0.log").write_text("epoch 0 loss 1.0\nhalf")
    (out_dir / "node-1.log").write_text("from one\n")
    shown = {}
    for all_ranks in (False, True):
        out = io.StringIO()
        with ScriptOutputFollower(tmp_path, all_ranks, out, poll_s=0.01):
            pass
        shown[all_ranks] = out.getvalue()
    assert shown[False] == "epoch 0 loss 1.0\nhalf\n"
    assert shown[True] == "[node-0] epoch 0 loss 1.0\n[node-0] half\n[node-1] from one\n"
