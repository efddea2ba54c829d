"""One timeline across all simulated nodes: trace.json, `raysim trace`, the report's PNGs.

trace.json is read back with the json module only, as Perfetto or chrome://tracing would
read it: one process per node, thread rows for steps, compute and communication.
"""

import json
import time
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)
from torch.utils.data import DataLoader, TensorDataset

import raysim
from raysim.cli import main
from raysim.config import ConfigError, load_config
from raysim.record.recorder import MetricsRecorder
from raysim.record.trace import pack_rows
from raysim.report.timeline import draw_timeline
from raysim.rundir import TRACE_KEY, rank_lines, read_lines
from raysim.worker.meter import MeasuredLoader, StepMeter
from raysim.worker.tracer import StepTracer

STEP_PHASES = {
    "data wait", "forward", "straggler delay", "backward", "all-reduce wait", "optimizer step",
}  # fmt: skip
"""The compute spans that tile a measured step."""


def events_of(run_dir: Path) -> list[dict]:
    trace = json.loads((run_dir / "trace.json").read_text())
    assert set(trace) >= {"traceEvents"}
    return trace["traceEvents"]


def node_names(events: list[dict]) -> dict[int, str]:
    return {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}


def steps_of(events: list[dict]) -> dict[tuple[int, int, int], dict]:
    """(pid, epoch, step): the measured step's span."""
    return {
        (e["pid"], e["args"]["epoch"], e["args"]["step"]): e
        for e in events
        if e["ph"] == "X" and e["cat"] == "step"
    }


def phases_of(events: list[dict]) -> dict[tuple[int, int, int], list[dict]]:
    phases = defaultdict(list)
    for e in events:
        if e["ph"] == "X" and e["cat"] in ("compute", "comm") and "step" in e["args"]:
            phases[e["pid"], e["args"]["epoch"], e["args"]["step"]].append(e)
    return phases


def assert_lanes_do_not_overlap(events: list[dict]) -> None:
    lanes = defaultdict(list)
    for e in events:
        if e["ph"] == "X":
            lanes[e["pid"], e["tid"]].append(e)
    for lane, spans in lanes.items():
        spans.sort(key=lambda e: e["ts"])
        for before, after in zip(spans, spans[1:], strict=False):
            assert before["dur"] >= 0
            assert before["ts"] + before["dur"] <= after["ts"] + 1.0, (lane, before, after)


def assert_steps_are_tiled(
    events: list[dict], epochs: list[int], traced: int, untraced_us: float = 0.0
) -> None:
    """Every node has every traced step, and its compute spans add up to the step, but for
    untraced_us of code outside the hooks (a user's loss and zero_grad)."""
    names, steps, phases = node_names(events), steps_of(events), phases_of(events)
    assert sorted(names.values()) == [f"node {i}" for i in range(len(names))]
    for pid in names:
        for epoch in epochs:
            for step in range(1, traced + 1):
                span = steps[pid, epoch, step]
                compute = [p for p in phases[pid, epoch, step] if p["cat"] == "compute"]
                assert {p["name"] for p in compute} <= STEP_PHASES
                assert {"forward", "backward", "optimizer step"} <= {p["name"] for p in compute}
                for p in compute:  # inside the step (µs rounding aside)
                    assert span["ts"] - 1 <= p["ts"] <= p["ts"] + p["dur"] <= span["ts"] + span[
                        "dur"] + 1  # fmt: skip
                total = sum(p["dur"] for p in compute)
                assert total == pytest.approx(span["dur"], rel=0.05, abs=untraced_us), (
                    pid, epoch, step)  # fmt: skip
    assert_lanes_do_not_overlap(events)


# --- without Ray ---------------------------------------------------------------------------


def test_overlapping_buckets_get_rows_of_their_own():
    assert pack_rows([(0, 1), (1, 2), (2, 3)]) == [0, 0, 0]
    assert pack_rows([(0, 3), (1, 2), (2, 4), (3.5, 5)]) == [0, 1, 1, 0]


def test_the_meters_own_hooks_trace_the_first_steps_after_each_report():
    """A real model, loader and optimizer with the step measurements' hooks, no extra call."""
    meter = StepMeter(tracer=StepTracer(2))
    # steps of some ms, so that the loop's own code between the hooks is small
    model = nn.Sequential(nn.Linear(256, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                          nn.Linear(1024, 2))  # fmt: skip
    model.register_forward_pre_hook(meter.before_forward)
    model.register_forward_hook(meter.after_forward)
    hooks = [
        register_optimizer_step_pre_hook(lambda *_: meter.before_optimizer_step()),
        register_optimizer_step_post_hook(meter.after_optimizer_step),
    ]
    loader = MeasuredLoader(DataLoader(TensorDataset(torch.randn(320, 256)), batch_size=64), meter)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    try:
        for _ in range(2):  # reports
            before = time.time()
            for (inputs,) in loader:
                optimizer.zero_grad()
                model(inputs).sum().backward()
                optimizer.step()
            figures, spans = meter.take(), meter.tracer.take()
            steps = [s for s in spans if s[0] == "step"]
            assert [s[4] for s in steps] == [1, 2], "the first 2 of 5 steps, after each report"
            assert figures["optimizer_steps"] == 5
            for _, _, start, _, step, _ in steps:
                phases = [s for s in spans if s[0] == "compute" and s[4] == step]
                assert [p[1] for p in phases] == [
                    "data wait", "forward", "backward", "optimizer step"
                ]  # fmt: skip
                assert before <= start <= time.time(), "wall-clock time"
            # zero_grad, between the data and the forward, is the loop's own (short) code
            phases = sum(s[3] for s in spans if s[0] == "compute")
            assert phases == pytest.approx(sum(s[3] for s in steps), rel=0.05)
    finally:
        for hook in hooks:
            hook.remove()


def _report(rank: int, epoch: int, start: float) -> dict:
    spans = [
        ("compute", "forward", start, 0.01, 1, None),
        ("comm", "all-reduce", start + 0.02, 0.01, 1, {"bucket": 1}),
        ("compute", "optimizer step", start + 0.03, 0.01, 1, None),
        ("step", "step 1", start, 0.04, 1, None),
    ]
    return {"epoch": epoch, "rank": rank, "node_id": f"node-{rank}", "world_size": 2,
            "report_unix": start + 0.05, TRACE_KEY: spans}  # fmt: skip


def test_failures_and_a_restarted_group_keep_one_valid_trace(tmp_path):
    """The recorder outlives the worker group; a resumed run's recorder goes on with the
    file it finds. metrics.jsonl never holds the spans."""
    config = load_config(num_nodes=2, num_epochs=3, device="cpu").to_dict()
    start = time.time()
    recorder = MetricsRecorder(tmp_path, start, config)
    recorder.after_report(None, [_report(0, 1, start + 1), _report(1, 1, start + 1)], None)
    (tmp_path / "faults").mkdir()
    (tmp_path / "faults" / "fault-0.json").write_text(json.dumps(
        {"kind": "worker_crash", "rank": 1, "epoch": 2, "step": 1, "seconds": 0.0,
         "index": 0, "fired_unix": start + 2}))  # fmt: skip
    recorder.after_exception(None, {1: RuntimeError("gone")})
    recorder.after_report(None, [_report(0, 2, start + 3), _report(1, 2, start + 3)], None)
    resumed = MetricsRecorder(tmp_path, start + 10, config)  # `raysim run --resume`
    resumed.after_report(None, [_report(0, 3, start + 11), _report(1, 3, start + 11)], None)

    events = events_of(tmp_path)
    instants = sorted((e["name"], e["pid"]) for e in events if e["ph"] == "i")
    assert instants == [("failure", 2), ("fault: worker_crash", 2), ("recovered", 1),
                        ("recovered", 2)]  # fmt: skip
    fault = next(e for e in events if e["name"] == "fault: worker_crash")
    assert fault["ts"] == pytest.approx(2e6, abs=1), "µs since the run started"
    steps = steps_of(events)
    assert sorted(steps) == [(pid, epoch, 1) for pid in (1, 2) for epoch in (1, 2, 3)]
    assert steps[1, 3, 1]["ts"] == pytest.approx(11e6, abs=1), "the first run's time base"
    assert node_names(events) == {1: "node 0", 2: "node 1"}
    assert len([e for e in events if e["ph"] == "M" and e["name"] == "process_name"]) == 2
    assert not (tmp_path / "trace.json.partial").exists()
    lines = read_lines(tmp_path / "metrics.jsonl")
    assert len(rank_lines(lines)) == 6 and not any(TRACE_KEY in line for line in lines)


def test_trace_steps_is_checked():
    with pytest.raises(ConfigError, match="trace_steps: -1 is out of range"):
        load_config(trace_steps=-1)
    assert load_config().trace_steps == 3


def test_raysim_trace_names_what_is_missing(tmp_path, capsys):
    assert main(["trace", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "not a raysim run directory (no config.yaml)" in error
    (tmp_path / "config.yaml").write_text("num_nodes: 2\n")
    assert main(["trace", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "has no trace.json" in error and "trace_steps above 0" in error


# --- real runs -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def straggler_run(shared_ray, tmp_path_factory):
    """The built-in experiment, 2 nodes, node 1 a straggler; every step of 2 epochs traced."""
    cfg = load_config(
        num_nodes=2, num_epochs=2, max_steps_per_epoch=3, trace_steps=3, dataset="synthetic",
        synthetic_samples=256, image_size=16, batch_size=8, stragglers={1: 2.0}, device="cpu",
        run_dir=str(tmp_path_factory.mktemp("runs")), run_name="straggler",
    )  # fmt: skip
    return raysim.run(cfg, out=None).run_dir


@pytest.mark.slow
def test_every_node_has_every_traced_step_and_its_spans_add_up(straggler_run):
    events = events_of(straggler_run)
    assert_steps_are_tiled(events, epochs=[1, 2], traced=3)
    ranks = rank_lines(read_lines(straggler_run / "metrics.jsonl"))
    assert not any(TRACE_KEY in rank for rank in ranks)
    steps = steps_of(events)
    for rank in ranks:  # 3 steps an epoch, all traced: the trace's steps are the measured ones
        traced = sum(steps[rank["rank"] + 1, rank["epoch"], s]["dur"] for s in (1, 2, 3))
        assert traced / 1e6 == pytest.approx(rank["train_time_s"], rel=1e-3)
    assert {e["name"] for e in events if e.get("cat") == "comm"} == {"all-reduce"}, "loopback"
    assert any(e["name"] == "report" for e in events)


@pytest.mark.slow
def test_the_straggler_computes_longer_and_the_other_node_waits_for_it(straggler_run):
    phases = phases_of(events_of(straggler_run))
    per_step: dict[int, dict[str, float]] = {1: defaultdict(float), 2: defaultdict(float)}
    for (pid, _, _), spans in phases.items():
        for span in spans:
            per_step[pid][f"{span['cat']} {span['name']}"] += span["dur"] / 6 / 1e3  # ms
    fast, slow = per_step[1], per_step[2]  # node 0, node 1
    assert fast["compute straggler delay"] == 0
    # node 1 sleeps (2 - 1) × 3 × its forward after each forward
    assert slow["compute straggler delay"] == pytest.approx(3 * slow["compute forward"], rel=0.2)
    compute = [
        n["compute forward"] + n["compute straggler delay"] + n["compute backward"]
        for n in (fast, slow)
    ]
    delay = slow["compute straggler delay"]
    assert compute[1] > compute[0] + 0.5 * delay, (compute, delay)
    # DDP's all-reduce is a barrier: node 0 waits out node 1's delay, node 1 hardly waits
    for lane in ("compute all-reduce wait", "comm all-reduce"):
        assert fast[lane] > slow[lane] + 0.5 * delay, (lane, fast[lane], slow[lane], delay)


@pytest.mark.slow
def test_raysim_trace_draws_a_lane_per_node_and_compare_shows_it(straggler_run, tmp_path):
    out = tmp_path / "timeline.png"
    assert main(["trace", str(straggler_run), "--steps", "1-2", "--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 600 and image.height > 150
    assert main(["trace", str(straggler_run)]) == 0  # no --out: into the run directory
    with Image.open(straggler_run / "timeline.png") as image:
        assert image.format == "PNG" and image.width > 600
    timeline = draw_timeline(straggler_run, tmp_path / "e1.png", epoch=1)
    assert timeline.lanes == ["node 0", "node 1"]
    assert (timeline.epoch, timeline.steps) == (1, [1, 2, 3])
    assert all(
        {"forward", "backward"} <= {e["name"] for e in spans} for spans in timeline.spans.values()
    )
    raysim.compare([straggler_run], out=tmp_path / "report")
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Timelines" in report and "![timeline_straggler](timeline_straggler.png)" in report
    with Image.open(tmp_path / "report" / "timeline_straggler.png") as image:
        assert image.format == "PNG"


@pytest.mark.slow
def test_a_users_function_through_prepare_gets_a_trace(users_loop_run):
    """The session's run of a user's loop, jittering, node 1 a straggler: its sleeps are the
    straggler-delay spans that tile the step with the rest."""
    events = events_of(users_loop_run.run_dir)
    # Its loss and zero_grad run outside the hooks: 1.1 ms of a 21 ms step once, in the
    # full suite on 2 cores.
    assert_steps_are_tiled(events, epochs=[1, 2], traced=2, untraced_us=3000)
    assert sorted({k[2] for k in steps_of(events)}) == [1, 2], "only the first 2 steps"
    assert {e["name"] for e in events if e.get("cat") == "comm"} == {"all-reduce"}
    delays = {e["pid"] for e in events if e["name"] == "straggler delay"}
    assert delays == {1, 2}, "both jitter; node 1 straggles too"


def test_the_profiler_records_the_steps_after_its_skip_and_warm_up(tmp_path):
    """profile_steps 2: step 1 skipped, step 2 warms up, steps 3 and 4 are in the trace."""
    from raysim.worker.profiler import NodeProfiler

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trace = tmp_path / "profile" / "node-0.json"
    profiler = NodeProfiler(2, torch.device("cpu"), trace)
    for step in range(6):
        model(torch.randn(2, 3, 8, 8)).sum().backward()
        optimizer.step()
        profiler.step_done(optimizer)
        assert trace.exists() == (step >= 3), step  # written when the last one ends
    names = {event.get("name") for event in json.loads(trace.read_text())["traceEvents"]}
    steps = sorted(n for n in names if n and n.startswith("ProfilerStep#"))
    assert steps == ["ProfilerStep#2", "ProfilerStep#3"]
    assert {"aten::convolution", "aten::addmm"} <= names
