"""preempt on multi_node: Ray Core drains the node's Ray node with a deadline, Ray Train's
preemption path runs, and the built-in resumes from its just-in-time checkpoint into the
same weights as a run that was not preempted (the session's short_run: the same config
on one host)."""

from __future__ import annotations

import pytest

import raysim
from raysim.config import load_config, parse_inject
from raysim.rundir import epoch_lines, rank_lines, read_lines

pytestmark = [pytest.mark.slow, pytest.mark.own_cluster]

NOTICE_S = 15.0
"""The notice's travel, the stall, step 2 and both ranks' checkpoint reports, then the
controller's poll (every 0.5 s in such a run), all before the deadline: 4.0 s of it with
one busy loop beside the test on 2 cores (1.0 s to spare at 5 s, which the full suite's
load used up once)."""


STEPS = 3
"""short_run's: one epoch of three steps on two nodes, TINY."""


def config(tmp_path, name, **overrides):
    values = dict(
        num_nodes=2, num_epochs=1, max_steps_per_epoch=STEPS, image_size=16, batch_size=8,
        device="cpu", run_dir=str(tmp_path), run_name=name,
    )  # fmt: skip
    return load_config(**{**values, **overrides})


def same_weights(a, b):
    keys = ("epoch", "train_loss", "train_accuracy", "test_accuracy", "param_checksum")
    return [{k: e[k] for k in keys} for e in a] == [{k: e[k] for k in keys} for e in b]


def test_preempted_node_goes_through_rays_drain_and_resumes_at_the_step(
    short_run, without_shared_ray, tmp_path
):
    # node-1 gets its notice at step 2 (step 1 is slow to start: the deadline could come
    # before it ends), holds it before the step goes on, and stalls 1 s there, so node-0
    # has it too when they ask for it after step 2, before the epoch's last step. The
    # reference (same weights, one host, not preempted) is short_run, taken before
    # without_shared_ray ends the Ray it ran on.
    faults = [
        parse_inject(f"preempt:rank=1,epoch=1,step=2,notice_s={NOTICE_S}"),
        parse_inject("slow_node:rank=1,epoch=1,step=2,seconds=1.0"),  # fires after preempt
    ]
    preempted = raysim.run(config(tmp_path, "preempted", topology="multi_node", faults=faults),
                           out=None)  # fmt: skip
    records = read_lines(preempted.run_dir / "metrics.jsonl")

    # Ray Core held the node as drained, with the deadline notice_s after the fault, and
    # Ray Train's controller took the notice in its PreemptingState.
    (fault,) = [f for f in preempted.summary["faults"] if f["kind"] == "preempt"]
    (preempting,) = [r for r in records if r["kind"] == "preempting"]
    (drained,) = preempting["ray_node_ids"]
    assert preempting["nodes"] == ["node-1"]
    deadline_ms = preempting["ray_core_draining"][drained]
    assert abs(deadline_ms / 1000 - fault["fired_unix"] - NOTICE_S) < 1.0
    assert preempting["deadline_unix"] == deadline_ms / 1000
    (error,) = [r for r in records if r["kind"] == "error"]
    assert error["preemption"]["ray_node_ids"] == [drained], "restarted on the deadline"

    # The just-in-time checkpoint mid-epoch, and the resumed epoch from that very step.
    (jit,) = [r for r in records if r["kind"] == "preempt_checkpoint"]
    assert jit["step"] == 2, "after the notice's step, before the epoch's last"
    resumed = [r for r in rank_lines(records) if r["epoch"] == 1]
    assert {r["resumed_at_step"] for r in resumed} == {jit["step"]}
    assert {r["node_id"] for r in resumed} == {"node-0", "node-1"}
    assert drained not in {r["ray_node_id"] for r in resumed}, "node-1 on its new Ray node"

    assert same_weights(epoch_lines(records), epoch_lines(read_lines(
        short_run.run_dir / "metrics.jsonl")))  # fmt: skip
    assert fault["lost_steps"] == 0 and fault["lost_node_steps"] == 0
    assert fault["lost_node_seconds"] > 0
    assert 0 < fault["detected_after_s"] < 10
    assert preempted.summary["status"] == "finished"
