import io
import json
import re
import shlex
import subprocess
import sys

import pytest

from raysim.console import ProgressFollower, summary_table
from raysim.record.aggregate import aggregate_epoch
from raysim.report.summary import per_node_summary, summarize, world_size_changes
from raysim.rundir import append_lines, read_lines


def rank_report(rank, samples=10, loss_sum=5.0, correct=6, test=(3, 4), seconds=2.0, checksum="a"):
    return {
        "epoch": 1,
        "rank": rank,
        "node_id": f"node-{rank}",
        "train_samples": samples,
        "train_loss_sum": loss_sum,
        "train_correct": correct,
        "test_correct": test[0],
        "test_total": test[1],
        "epoch_time_s": seconds,
        "eval_time_s": 0.1,
        "steps": 5,
        # raysim's step measurements
        "train_time_s": seconds,
        "measured_samples": samples,
        "step_time_s": seconds / 5,
        "samples_per_s": samples / seconds,
        "param_checksum": checksum,
        "peak_rss_bytes": 100 + rank,
        "memory_budget_bytes": 1000,
        "memory_peak_bytes": 400 + rank,
        "epoch_start_unix": 50.0 + rank,
        "report_unix": 60.0 + rank,
    }


def test_aggregate_weights_by_samples_and_takes_the_slowest_rank():
    reports = [
        rank_report(0, samples=10, loss_sum=10.0, correct=5, test=(3, 5), seconds=2.0),
        rank_report(1, samples=30, loss_sum=6.0, correct=27, test=(4, 5), seconds=4.0),
    ]
    agg = aggregate_epoch(reports, run_start_unix=40.0)
    assert agg["train_loss"] == pytest.approx(16.0 / 40)
    assert agg["train_accuracy"] == pytest.approx(32 / 40)
    assert agg["test_accuracy"] == pytest.approx(7 / 10)
    assert agg["epoch_time_s"] == 4.0
    assert agg["samples_per_s"] == pytest.approx(40 / 4.0)
    assert agg["checksums_match"] is True
    assert agg["peak_rss_bytes"] == 101
    assert agg["wall_time_s"] == pytest.approx(21.0)


def test_differing_checksums_are_flagged():
    agg = aggregate_epoch([rank_report(0, checksum="a"), rank_report(1, checksum="b")], 0.0)
    assert agg["checksums_match"] is False


def test_a_torn_last_line_is_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append_lines(path, [{"kind": "epoch", "epoch": 1}])
    with path.open("a") as log:
        log.write('{"kind": "epo')
    assert read_lines(path) == [{"kind": "epoch", "epoch": 1}]


def _records(epochs):
    records = []
    for epoch in range(1, epochs + 1):
        ranks = [dict(rank_report(r, seconds=float(epoch)), epoch=epoch) for r in range(2)]
        records += [{"kind": "rank", **m} for m in ranks] + [aggregate_epoch(ranks, 0.0)]
    return records


def test_summary_separates_the_warm_up_epoch():
    summary = summarize(_records(3), {"process_start": 20.0})
    assert summary["status"] == "finished"
    assert summary["epochs_completed"] == 3
    assert summary["mean_epoch_time_s"] == pytest.approx(2.0)
    assert summary["mean_epoch_time_after_first_s"] == pytest.approx(2.5)
    assert summary["time_to_first_step_s"] == pytest.approx(30.0)
    assert [n["rank"] for n in summary["nodes"]] == [0, 1]
    json.dumps(summary)


def test_startup_stages_end_when_the_slowest_node_passes_them():
    driver = {"process_start": 100.0, "run_start": 104.0, "cluster_ready": 107.0,
              "fit_start": 107.5}  # fmt: skip
    node = {"node_start": 120.0, "node_ready": 120.1, "prepare_start": 123.0,
            "prepare_end": 124.0, "first_step_start": 124.5, "first_step_end": 125.0}  # fmt: skip
    slow = {"node_start": 121.0, "node_ready": 121.1, "prepare_start": 125.0,
            "prepare_end": 125.5, "first_step_start": 126.0, "first_step_end": 126.5}  # fmt: skip
    records = _records(1)
    records[0]["startup"], records[1]["startup"] = node, slow
    records.insert(3, {"kind": "rank", "epoch": 2, "rank": 1, "startup": {"node_start": 999.0}})
    summary = summarize(records, driver)
    stages = {s["stage"]: s["seconds"] for s in summary["startup"]["stages"]}
    # each rank's first marks count (rank 1's epoch-2 marks are a restarted group's)
    assert list(stages.values()) == pytest.approx([4.0, 3.0, 0.5, 13.5, 0.1, 3.9, 0.5, 0.5, 0.5])
    assert stages["Ray Train: controller, worker group, process group"] == pytest.approx(13.5)
    # the first step is collective: it starts when the slowest node starts it
    assert summary["time_to_first_step_s"] == pytest.approx(26.0)
    # a later run in the same process counts from its raysim.run call
    later = summarize(records, {k: v for k, v in driver.items() if k != "process_start"})
    assert later["time_to_first_step_s"] == pytest.approx(22.0)
    assert len(later["startup"]["stages"]) == 8


def test_a_command_a_shell_execs_after_others_is_told_apart():
    """`bash -c "pip install ... && raysim run"` execs raysim in the shell's process, whose
    start is the shell's: such a run is timed from raysim.run, not from the pip install."""
    probe = [sys.executable, "-c", "from raysim.procfs import ran_other_programs; "
             "print(ran_other_programs())"]  # fmt: skip
    busy = f"{shlex.quote(sys.executable)} -c 'sum(range(3 * 10**7))'"

    def answer(command: list[str]) -> str:
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout

    assert answer(probe) == "False\n"
    assert answer(["bash", "-c", f"{busy} && exec {shlex.join(probe)}"]) == "True\n"


def test_summary_of_a_failed_run_without_epochs():
    summary = summarize([{"kind": "error", "ranks": {"0": "boom"}}], {"process_start": 0.0})
    assert summary["status"] == "failed" and summary["epochs_completed"] == 0


def test_summary_table_shows_each_node(tmp_path):
    summary = summarize(_records(2), {"process_start": 0.0})
    summary["wall_time_s"] = 12.5
    table = summary_table(summary, tmp_path)
    assert "final test accuracy" in table and "0.7500" in table
    assert "node-1" in table and "12.5 s" in table
    assert "all-reduce" not in table, "these reports say nothing of it"
    records = [{**r, "shared_memory_allreduce": True} if r.get("kind") == "rank" else r
               for r in _records(2)]  # fmt: skip
    summary = {**summarize(records, {"process_start": 0.0}), "wall_time_s": 12.5}
    assert summary["allreduce"] == "shared memory"
    assert re.search(r"all-reduce\s+shared memory", summary_table(summary, tmp_path))
    records[0]["shared_memory_allreduce"] = False  # one rank over gloo: the run was not all
    assert summarize(records, {"process_start": 0.0})["allreduce"] == "gloo"


def test_a_lost_node_keeps_its_name_when_ranks_move(tmp_path):
    """Elastic: node-1 is lost after epoch 1; node-2 becomes rank 1."""
    ranks = [{**rank_report(r), "kind": "rank"} for r in range(3)]
    later = [{**rank_report(0), "epoch": 2}, {**rank_report(1), "epoch": 2, "node_id": "node-2"}]
    ranks += [{**r, "kind": "rank"} for r in later]
    nodes = {n["node_id"]: n for n in per_node_summary(ranks)}
    assert sorted(nodes) == ["node-0", "node-1", "node-2"]
    assert nodes["node-1"]["last_epoch"] == 1 and nodes["node-2"]["rank"] == 1
    epochs = [
        {"epoch": 1, "world_size": 3},
        {"epoch": 2, "world_size": 2},
        {"epoch": 3, "world_size": 2},
    ]
    assert world_size_changes(epochs) == [{"epoch": 2, "from": 3, "to": 2}]
    summary = {
        "status": "finished", "epochs_completed": 2, "world_size": 2, "nodes": nodes.values(),
        "world_size_changes": world_size_changes(epochs), "final_metrics": {"loss": 0.5},
    }  # fmt: skip
    table = summary_table(summary, tmp_path)
    assert "2 (3 → 2 at epoch 2)" in table and "node-1 (gone after epoch 1)" in table


def test_the_console_tells_failures_and_recoveries_between_epochs(tmp_path):
    path = tmp_path / "metrics.jsonl"
    fault = {"kind": "node_loss", "rank": 1, "epoch": 2, "step": 1, "index": 0}
    append_lines(path, [
        {"kind": "epoch", "epoch": 1, "world_size": 3, "loss": 0.5},
        {"kind": "error", "ranks": {"2": "...", "0": "..."}, "faults": [fault], "detect_s": 3.5},
        {"kind": "recovered", "epoch": 2, "recover_s": 48.25},
    ])  # fmt: skip
    out = io.StringIO()
    with ProgressFollower(path, 3, out, poll_s=0.05):
        pass
    lines = out.getvalue().splitlines()
    assert lines[1] == (
        "raysim: the worker group failed (rank 0, 2): injected node_loss on node-1, "
        "noticed after 3.5 s"
    )
    assert lines[2] == "raysim: recovered: epoch 2 reported 48.2 s after the failure"
