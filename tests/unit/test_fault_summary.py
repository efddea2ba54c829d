"""summary.json's faults from metrics.jsonl's records and the fault markers (no Ray)."""

from __future__ import annotations

from pathlib import Path

from raysim.console.table import summary_table
from raysim.report.faults import fault_entries

HANG = {"kind": "hang", "rank": 1, "epoch": 3, "step": 4, "index": 0, "fired_unix": 100.0}
SLOW = {"kind": "data_stall", "rank": 0, "epoch": 1, "step": 1, "index": 1, "fired_unix": 10.0}


def records():
    return [
        {"kind": "rank", "epoch": 1, "rank": 0, "report_unix": 12.5},
        {"kind": "epoch", "epoch": 1, "steps": 5, "slowest_rank": 0, "checkpoint": "c1"},
        {"kind": "epoch", "epoch": 2, "steps": 5, "slowest_rank": 1},
        {"kind": "error", "time_unix": 106.0, "faults": [SLOW, HANG], "detect_s": 6.0,
         "stall": {"detected_after_s": 5.1}},
        {"kind": "recovered", "epoch": 2, "recover_s": 40.0},
    ]  # fmt: skip


def test_each_fault_with_its_cost_and_how_the_run_went_on():
    slow, hang = fault_entries(records(), [HANG, SLOW])
    assert slow == {
        "kind": "data_stall", "rank": 0, "epoch": 1, "step": 1, "fired_unix": 10.0,
        "detected_after_s": 2.5, "lost_steps": 0, "went_on": "no failure: the run went on",
    }  # fmt: skip
    assert hang["detected_after_s"] == 5.1, "the hang watch's, not Ray's"
    assert hang["lost_steps"] == 5 + 3, "epoch 2 and epoch 3's first three steps"
    assert hang["went_on"] == (
        "restarted from epoch 1's checkpoint; epoch 2 reported 40.0 s after the fault"
    )


def test_a_failure_not_recovered_and_no_checkpoint():
    crash = {**HANG, "kind": "worker_crash"}
    error = {"kind": "error", "faults": [crash], "detect_s": 1.5}
    (entry,) = fault_entries([error], [crash])
    assert (entry["detected_after_s"], entry["lost_steps"]) == (1.5, 3)
    assert entry["went_on"] == "the run failed"


def test_the_console_summary_shows_them():
    summary = {"status": "failed", "epochs_completed": 0, "nodes": [],
               "faults": fault_entries(records(), [HANG])}  # fmt: skip
    text = summary_table(summary, Path("runs/x"))
    header, rule, row = text.split("\n\n")[-1].splitlines()
    assert header.split() == ["fault", "node", "at", "told", "after", "lost", "steps", "then"]
    assert row.split()[:8] == ["hang", "node-1", "epoch", "3", "step", "4", "5.1", "s"]
    assert row.rstrip().endswith(
        "restarted from epoch 1's checkpoint; epoch 2 reported 40.0 s after the fault"
    )


PREEMPT = {"kind": "preempt", "rank": 1, "epoch": 2, "step": 3, "index": 0, "fired_unix": 50.0}


def test_a_preemption_costs_the_time_from_its_checkpoint_to_the_resumed_steps():
    records = [
        {"kind": "epoch", "epoch": 1, "steps": 9, "checkpoint": "c1"},
        {"kind": "preempt_checkpoint", "epoch": 2, "step": 4, "time_unix": 51.0},
        {"kind": "preempting", "detected_unix": 51.2, "ranks": [0]},
        {"kind": "error", "time_unix": 55.0, "ranks": {}, "faults": [PREEMPT], "detect_s": 1.2,
         "preemption": {"ranks": [0], "nodes": ["node-1"]}},
        {"kind": "recovered", "epoch": 2, "recover_s": 20.0},
        *({"kind": "rank", "epoch": 2, "rank": r, "resumed_at_step": 4, "resumed_unix": 61.0}
          for r in (0, 1)),
        {"kind": "epoch", "epoch": 2, "steps": 9, "resumed_at_step": 4},
    ]  # fmt: skip
    (entry,) = fault_entries(records, [PREEMPT])
    assert (entry["detected_after_s"], entry["checkpoint_step"]) == (1.2, 4)
    assert (entry["lost_steps"], entry["lost_node_steps"]) == (0, 0), "resumed at the step"
    assert entry["lost_node_seconds"] == 2 * (61.0 - 51.0)
    assert entry["went_on"].startswith("restarted from the just-in-time checkpoint at epoch 2")


def test_an_error_is_timed_from_its_own_failing_fault_not_earlier_ones(tmp_path):
    """A data stall long before a crash, and a crash already told at an earlier failure,
    are no part of a later failure's detect_s (nor listed again)."""
    import json
    import time

    from raysim.record.recorder import MetricsRecorder
    from raysim.rundir import FAULTS_DIR, read_lines

    recorder = MetricsRecorder(tmp_path, 0.0, {"num_epochs": 3})
    (tmp_path / FAULTS_DIR).mkdir()

    def fire(index, kind, ago_s):
        fault = {"kind": kind, "rank": 1, "epoch": 2, "step": 1, "index": index,
                 "fired_unix": time.time() - ago_s}  # fmt: skip
        (tmp_path / FAULTS_DIR / f"fault-{index}.json").write_text(json.dumps(fault))

    fire(0, "data_stall", 80.0)
    fire(1, "worker_crash", 2.0)
    recorder.after_exception(None, {})
    recorder.failed_at = None  # the run recovered
    fire(2, "oom", 1.0)
    recorder.after_exception(None, {})
    first, second = [r for r in read_lines(tmp_path / "metrics.jsonl") if r["kind"] == "error"]
    assert [f["index"] for f in first["faults"]] == [0, 1] and 2 <= first["detect_s"] < 10
    assert [f["index"] for f in second["faults"]] == [2] and 1 <= second["detect_s"] < 10


def test_a_restart_failed_by_another_fault_before_it_recovered_still_went_on():
    """The chaos soak's hang, whose restarted group a node_loss failed before its first
    report: the run went on, it did not fail."""
    loss = {**HANG, "kind": "node_loss", "epoch": 4, "step": 1, "index": 2, "fired_unix": 130.0}
    later = [
        {"kind": "error", "time_unix": 132.0, "faults": [loss], "detect_s": 2.0},
        {"kind": "recovered", "epoch": 3, "recover_s": 60.0},
    ]
    hang, lost = fault_entries(records()[:-1] + later, [HANG, loss])
    assert hang["went_on"].startswith("restarted from epoch 1's checkpoint; failed again")
    assert "(node_loss) before an epoch was reported" in hang["went_on"]
    assert lost["went_on"].startswith("restarted from epoch 1's checkpoint; epoch 3 reported")
