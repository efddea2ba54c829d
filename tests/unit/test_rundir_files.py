"""A run directory's files read back whole or told as one line: atomic writes, torn and
corrupt lines, a summary or config that is not what `raysim run` wrote."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from raysim.cli import main
from raysim.rundir import RunDirError, read_json, read_lines, write_json


def _run_dir(tmp_path, summary_text: str, config_text: str = "num_nodes: 2\n"):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(config_text)
    (run / "summary.json").write_text(summary_text)
    (run / "metrics.jsonl").write_text("")
    return run


def test_a_torn_last_line_is_skipped_and_a_corrupt_middle_line_is_told(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"kind": "epoch", "epoch": 1}\n{"kind": "epo')
    assert read_lines(log) == [{"kind": "epoch", "epoch": 1}]
    log.write_text('{"kind": "epoch", "epoch": 1}\nnot json\n{"kind": "epoch", "epoch": 2}\n')
    with pytest.raises(RunDirError, match=r"metrics.jsonl line 2 is not a JSON record"):
        read_lines(log)


def test_write_json_replaces_the_file_whole_even_when_killed_mid_write(tmp_path):
    """A reader never sees a large file half rewritten, and a writer killed while it
    rewrites one leaves the old or the new one."""
    path = tmp_path / "summary.json"
    write_json(path, {"n": -1})
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from pathlib import Path; from raysim.rundir import write_json\n"
         f"p = Path({str(path)!r}); big = ['x' * 1000] * 20000\n"
         "for n in range(1000): write_json(p, {'n': n, 'big': big})"]
    )  # fmt: skip
    reads, deadline = 0, time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert isinstance(read_json(path)["n"], int)
        reads += 1
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert isinstance(read_json(path)["n"], int)
    assert reads > 10


def test_a_failed_serialisation_keeps_the_old_file(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"status": "finished"})
    with pytest.raises(TypeError):
        write_json(path, {"status": object()})
    assert read_json(path) == {"status": "finished"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


@pytest.mark.parametrize("command", [["compare"], ["project", "--nodes", "1,2"]])
@pytest.mark.parametrize(
    ("summary", "config", "told"),
    [
        ('{"status": "fini', "num_nodes: 2\n", "summary.json is not valid JSON"),
        ('{"status": "finished"}', "num_nodes: [2\n", "config.yaml is not YAML (line 2)"),
        ('{"status": "finished"}', "just text\n", "config.yaml does not hold a config mapping"),
    ],
)
def test_compare_and_project_tell_a_corrupt_run_in_one_line(
    tmp_path, capsys, command, summary, config, told
):
    run = _run_dir(tmp_path, summary, config)
    args = [command[0], str(run), *command[1:]]
    if command[0] == "compare":
        args += ["--out", str(tmp_path / "report")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert told in err
    assert err.count("\n") == 1 and "Traceback" not in err
