"""A hung node: the watch's decision (no Ray), then a real hang on real gloo and Ray (the
hung run that restarts and finishes: test_faults' resumed run)."""

from __future__ import annotations

import json
import os
import time

import pytest

import raysim
from raysim.config import load_config, parse_inject
from raysim.console.lines import event_line
from raysim.rundir import read_lines
from raysim.worker.collective_ledger import CollectiveLedger, read_ledgers
from raysim.worker.hang_watch import find_stall
from tests.hang_runs import HANG_TIMEOUT_S, TOLD_WITHIN_S

TIMEOUT_S = 5.0


def ledger(rank, seq, history, epoch=2, step=3):
    return {"group": "g", "rank": rank, "node": f"node-{rank}", "pid": 1, "seq": seq,
            "epoch": epoch, "step": step, "step_unix": 0.0, "history": history}  # fmt: skip


def entry(seq, unix, kind="allreduce", nbytes=1000):
    return {"seq": seq, "kind": kind, "bytes": nbytes, "unix": unix, "epoch": 2, "step": 2}


def test_the_node_behind_is_named_once_its_peers_waited_past_the_timeout():
    ledgers = [
        ledger(0, 8, [entry(7, 90.0), entry(8, 100.0, "broadcast", 9600)]),
        ledger(1, 7, [entry(7, 90.5)]),
        ledger(2, 8, [entry(8, 101.0, "broadcast", 9600)]),
    ]
    assert find_stall(ledgers, 3, now=104.9, timeout_s=TIMEOUT_S) is None
    stall = find_stall(ledgers, 3, now=105.5, timeout_s=TIMEOUT_S)
    assert [node["node"] for node in stall["stopped"]] == ["node-1"]
    assert stall["waiting"] == ["node-0", "node-2"]
    assert stall["collective"] == {"seq": 8, "kind": "broadcast", "bytes": 9600}
    assert stall["waited_s"] == pytest.approx(5.5)
    assert (stall["stopped"][0]["epoch"], stall["stopped"][0]["step"]) == (2, 3)


def test_no_stall_while_ranks_are_even_or_a_rank_is_missing():
    even = [ledger(0, 8, [entry(8, 0.0)]), ledger(1, 8, [entry(8, 0.0)])]
    assert find_stall(even, 2, now=1e6, timeout_s=TIMEOUT_S) is None
    assert find_stall(even[:1], 2, now=1e6, timeout_s=TIMEOUT_S) is None


def test_the_ledger_is_read_back_by_its_group_only(tmp_path):
    mine = CollectiveLedger(tmp_path, "g1", 0, "node-0")
    mine.at_step(1, 4)
    mine.entered("allreduce", 44_700_000)
    CollectiveLedger(tmp_path, "g0", 1, "node-1").close()  # an earlier group's
    (seen,) = read_ledgers(tmp_path, "g1")
    assert (seen["seq"], seen["epoch"], seen["step"]) == (1, 1, 4)
    assert seen["history"][0]["kind"] == "allreduce" and seen["history"][0]["bytes"] == 44_700_000
    mine.close()


def test_the_console_names_the_stopped_node_first():
    stall = {"stopped": [{"rank": 1, "node": "node-1", "epoch": 2, "step": 3}],
             "waiting": ["node-0"], "collective": {"seq": 57, "kind": "allreduce",
             "bytes": 44_700_000}, "waited_s": 5.2, "timeout_s": 5.0}  # fmt: skip
    text = event_line({"kind": "error", "ranks": {"0": "", "1": ""}, "stall": stall})
    first, second = text.splitlines()
    assert first == (
        "raysim: hang: node-1 stopped entering collectives at epoch 2, step 3: it did not "
        "enter allreduce #57 (44.7 MB), which node-0 waited in for 5.2 s "
        "(collective_timeout_s 5); raysim ended the worker group"
    )
    assert second.startswith("raysim: the worker group failed (rank 0, 1)")


def hang_config(tmp_path):
    """node-1 hangs at step 3 of the one epoch."""
    return load_config(
        num_nodes=2, num_epochs=1, max_steps_per_epoch=3, image_size=16, device="cpu",
        run_dir=str(tmp_path), run_name="hang", collective_timeout_s=HANG_TIMEOUT_S,
        shared_memory_allreduce=False,  # the all-reduce on real gloo
        faults=[parse_inject("hang:rank=1,epoch=1,step=3")],
    )  # fmt: skip


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_a_hang_is_named_and_ended_within_the_timeout(shared_ray, tmp_path):
    cfg = hang_config(tmp_path)
    with pytest.raises(raysim.RunFailedError) as info:
        raysim.run(cfg, out=None)
    ended = time.time()
    message = str(info.value)
    assert message.startswith("hang: node-1 stopped entering collectives at epoch 1, step 3")
    run_dir = tmp_path / "hang"
    (error,) = [r for r in read_lines(run_dir / "metrics.jsonl") if r["kind"] == "error"]
    stall = error["stall"]
    assert [n["node"] for n in stall["stopped"]] == ["node-1"] and stall["waiting"] == ["node-0"]
    assert stall["collective"]["kind"] in ("allreduce", "broadcast")
    assert stall["collective"]["bytes"] > 0 and stall["collective"]["seq"] > 0
    (fired,) = [f for f in error["faults"] if f["kind"] == "hang"]
    assert HANG_TIMEOUT_S <= stall["waited_s"] < HANG_TIMEOUT_S + TOLD_WITHIN_S
    # its peer may have entered the collective just before the hang fired
    assert HANG_TIMEOUT_S - 1 < stall["detected_after_s"] < HANG_TIMEOUT_S + TOLD_WITHIN_S
    assert ended - fired["fired_unix"] < HANG_TIMEOUT_S + 15, "the run ended soon after"
    trace = json.loads((run_dir / "trace.json").read_text())
    (drawn,) = [e for e in trace["traceEvents"] if e["name"].startswith("hang: did not enter")]
    assert drawn["args"]["step"] == 3
    pids = [json.loads(p.read_bytes())["pid"] for p in (run_dir / "collectives").iterdir()]
    deadline = time.time() + 10
    while any(alive(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in pids), "no worker process is left"
