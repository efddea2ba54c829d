"""One command regenerates every kept result, and every kept result says how it was made."""

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import run_all  # noqa: E402

from tests.benchmarks.test_benchmark_tables import FINISHED_AB  # noqa: E402

KEPT = sorted((BENCH / "results").glob("*.json"))
AB_TOOLS = {"bench_ab.py", "bench_cli_start.py"}
"""Run with the commits on their command line; a finished comparison is a kept file."""


def test_every_benchmark_and_every_kept_result_is_in_run_all_or_a_finished_ab():
    scripts = {b.script for b in run_all.BENCHMARKS}
    assert scripts | AB_TOOLS == {p.name for p in BENCH.glob("bench_*.py")}
    assert not scripts & AB_TOOLS, "a finished A/B kept as a row"
    made = [name for b in run_all.BENCHMARKS for name in b.results]
    assert len(made) == len(set(made)), "two benchmarks write one file"
    finished = {p.name for p in KEPT if "trees" in json.loads(p.read_text())}
    assert finished == FINISHED_AB and not finished & set(made)
    assert {p.name for p in KEPT} - finished <= set(made), "a kept result run_all cannot make"
    for bench in run_all.BENCHMARKS:  # the kept run writes its files where run_all looks
        flags = " ".join(bench.args)
        assert all(name in flags or bench.args[-1] == "{out}" for name in bench.results)


@pytest.mark.parametrize("path", KEPT, ids=[p.name for p in KEPT])
def test_a_kept_result_names_its_commit_command_machine_versions_and_date(path):
    record = json.loads(path.read_text())
    assert len(record["commit"]) >= 7 and record["command"].split()[0].startswith("python")
    assert record["date"][:4] == "2026"
    machine, versions = record["machine"], record["versions"]
    assert {"cores", "memory_gib", "cpu_model", "gpu"} <= set(machine)
    assert machine["cores"] >= 1
    missing = [key for key in ("memory_gib", "cpu_model") if machine[key] is None]
    assert not missing or "provenance_note" in record, f"{missing} unrecorded, unexplained"
    assert versions["torch"] and versions["ray"] and versions["python"]


def test_a_finished_ab_records_its_command_and_both_trees():
    for path in KEPT:
        record = json.loads(path.read_text())
        if "trees" in record:
            assert {"before", "after"} <= set(record["trees"])
            assert any(tool in record["command"] for tool in AB_TOOLS), path.name


def test_the_quick_form_runs_and_writes_where_it_is_told(tmp_path):
    """Two benchmarks that need no Ray, at their quick sizes, through run_all itself
    (--allow-dirty: a test runs in whatever tree it finds, and says so in the result).
    The FSDP check takes seconds; bench_projection.py's minute is spent whole by
    tests/unit/test_projection_validation.py."""
    seconds = run_all.main(["--quick", "--allow-dirty", "--only",
                            "projection-fsdp,measure-hooks", "--out", str(tmp_path)])  # fmt: skip
    assert set(seconds) == {"projection-fsdp", "measure-hooks"}
    for name in ("projection_fsdp_validation.json", "bench_measure_hooks.json"):
        record = json.loads((tmp_path / name).read_text())
        assert "run_all.py" not in record["command"] and record["machine"]["cores"] >= 1
        assert record["describe"].startswith(record["commit"])
    hooks = json.loads((tmp_path / "bench_measure_hooks.json").read_text())
    assert 1 < hooks["summary"]["cost"]["plain_step_ms"] < hooks["summary"]["full"]["plain_step_ms"]
    assert set(hooks["phases"]) == {"cost", "full"} and len(hooks["phases"]["cost"]) == 2


def test_the_hooks_cost_cancels_the_build_order_and_reads_a_known_cost():
    """Each order's median paired difference, averaged over orders: a bias that flips
    with the build order cancels, and a cost added to every step is read back."""
    from bench_measure_hooks import added_seconds

    plain = [0.010, 0.012, 0.011, 0.013, 0.010]
    first = {"plain": plain, "instrumented": [s + 0.0004 + 0.0001 for s in plain]}
    second = {"plain": plain, "instrumented": [s + 0.0004 - 0.0001 for s in plain]}
    added, low, high = added_seconds([first, second])
    assert added == pytest.approx(0.0004) and low == pytest.approx(0.0004)
    assert high == pytest.approx(0.0004)


def test_the_launched_copy_is_the_ddp_the_launcher_adopts_and_only_its_steps_are_seen():
    """--launched, one build order at 2 pairs, the plain copy built first: the launcher's
    DDP init adopted the launched copy, not the plain one, and its patches saw that copy's
    backward passes only (its steps counted by the meter and its losses read, warm-up and
    pairs), never the plain copy's."""
    import socket

    from bench_measure_hooks import WARM_UP_STEPS, phases, run_phase

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    phase = phases(8, 2, "launched")[1]
    assert phase["build_order"] == ("plain", "instrumented")
    result = run_phase(2, phase, port)
    steps = WARM_UP_STEPS + 2
    assert result["counted"] == {"measured_steps": steps, "script_losses": steps}
    assert all(len(times) == 2 and min(times) > 0 for times in result["step_seconds"].values())


def test_a_result_is_refused_from_a_dirty_tree_and_records_describe(tmp_path):
    """A clean temporary repository: its commit is described as it is; one tracked edit
    (not under benchmarks/results) makes it dirty, refused in one line naming the fix."""
    import subprocess

    import common

    repo = tmp_path / "repo"
    (repo / "benchmarks" / "results").mkdir(parents=True)
    for name, text in (("a.py", "x = 1\n"), ("benchmarks/results/r.json", "{}")):
        (repo / name).write_text(text)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    commit = common.git_commit(repo)
    (repo / "benchmarks" / "results" / "r.json").write_text('{"new": 1}')
    common.require_clean(False, repo)  # a rewritten result is no change to the code
    assert common.describe(repo) == commit
    (repo / "a.py").write_text("x = 2\n")
    assert common.describe(repo) == f"{commit}-dirty"
    with pytest.raises(SystemExit, match=r"uncommitted changes \(a.py\): commit first"):
        common.require_clean(False, repo)
    common.require_clean(True, repo)


def test_an_unknown_name_is_refused_with_the_known_ones():
    with pytest.raises(SystemExit, match="unknown benchmark; known: core, core-data"):
        run_all.main(["--only", "cores", "--list"])
