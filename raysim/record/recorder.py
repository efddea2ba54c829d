"""Controller-side recorder: the one place metrics are written (metrics.jsonl, and the
run's trackers, which it builds here from the config's plain settings).

Runs inside Ray Train's controller actor (not the driver), so it writes files and
prints nothing; the driver follows metrics.jsonl for the console.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

from ray.train import UserCallback
from ray.train.v2._internal.execution.callback import ControllerCallback

from raysim.config.faults import LATE_KINDS
from raysim.config.tracking import parse_tracking
from raysim.plan.resources import NODE_LABEL
from raysim.record.aggregate import aggregate_epoch
from raysim.record.trace import TraceWriter
from raysim.record.trackers import Trackers, trackers_for
from raysim.rundir import (
    METRICS_FILE,
    PREEMPT_CHECKPOINT_KEY,
    append_lines,
    epoch_lines,
    fired_faults,
    found_stalls,
    read_metrics,
)

NOT_PREPARED = (
    "the training function did not call raysim.worker.prepare(model, loader), so the "
    "memory partition, the network emulation, stragglers and raysim's step measurements "
    "(step time, samples/s, model facts) are off for this run"
)


class MetricsRecorder(UserCallback):
    """Records each epoch once: a restarted worker group replays epochs since the last
    checkpoint, and those replays are counted as recovery, not as new epochs."""

    def __init__(self, run_dir: Path, run_start_unix: float, config: dict):
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / METRICS_FILE
        self.run_start_unix = run_start_unix
        self.config = config
        self.num_epochs = config["num_epochs"]
        self._trackers: Trackers | None = None
        earlier = read_metrics(self.run_dir)
        self.recorded = {e["epoch"] for e in epoch_lines(earlier)}
        self.failed_at: float | None = None
        self.faults_told = {f["index"] for f in fired_faults(self.run_dir)}
        """Faults an error record listed already (or an earlier run of a resumed one): a
        later failure is not theirs, nor timed from them."""
        self.told_unprepared = bool(self.recorded)
        self.stalls_told = {stall["group"] for stall in found_stalls(self.run_dir)}
        tracing = config.get("measure_steps", True) and config.get("trace_steps", 0) > 0
        self.trace = TraceWriter(self.run_dir, run_start_unix, enabled=tracing)
        self.preempting: dict | None = None
        """Ray Train's controller is waiting out a drained node's deadline."""

    @property
    def trackers(self) -> Trackers:
        """Built on first use, in the controller: the recorder travels there as plain values."""
        if self._trackers is None:
            tracking = parse_tracking(self.config.get("tracking"))
            self._trackers = trackers_for(tracking, self.run_dir, self.config)
        return self._trackers

    def controller_callbacks(self) -> list:
        """The controller-side callbacks that feed this recorder, for the run's callbacks."""
        return [PreemptionStates(self)]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_trackers": None}

    def after_report(self, run_context, metrics, checkpoint):
        if metrics[0].get(PREEMPT_CHECKPOINT_KEY):
            self._record_preempt_checkpoint(metrics[0], checkpoint)
            return
        # A function that reports no "epoch" gets its reports numbered in order.
        number = metrics[0].get("epoch", max(self.recorded, default=0) + 1)
        metrics = self.trace.take_spans(metrics, number)  # spans to trace.json, not the lines
        if self.failed_at is not None:
            self._record_recovery(number)
        if number in self.recorded:
            return
        self.recorded.add(number)
        # Ray Train lists the reports in rank order; a plain ray.train.report has no "rank".
        reports = [{"rank": i, **m} for i, m in enumerate(metrics)]
        ranks = [{"kind": "rank", "epoch": number, **m} for m in reports]
        epoch = aggregate_epoch(reports, self.run_start_unix, number)
        if checkpoint is not None:
            epoch["checkpoint"] = checkpoint.path
        notice = []
        if not self.told_unprepared:  # said once, with the first report
            self.told_unprepared = True
            if not all(m.get("prepared") for m in metrics):
                notice = [{"kind": "notice", "epoch": number, "text": NOT_PREPARED}]
        append_lines(self.metrics_path, [*notice, *ranks, epoch])
        failures = self.trackers.log_epoch(epoch, ranks)  # a tracker's, as notice lines
        if failures:
            append_lines(self.metrics_path, failures)
        if epoch["epoch"] == self.num_epochs:
            self.trackers.close()

    def after_exception(self, run_context, worker_exceptions):
        if self.preempting is not None:
            return  # the drained node went at its deadline: told once, as the preemption
        now = time.time()
        failures = {
            str(rank): "".join(traceback.format_exception(err)).strip()
            for rank, err in worker_exceptions.items()
        }
        record = {"kind": "error", "time_unix": now, "ranks": failures}
        fresh = self._fresh_faults()
        # A late fault (slow_node, data_stall) fails nothing: the failure is timed from
        # the ones that do, where there are any.
        cause = [f for f in fresh if f["kind"] not in LATE_KINDS] or fresh
        if fresh:
            record["faults"] = fresh
            record["detect_s"] = now - min(f["fired_unix"] for f in cause)
        self.failed_at = min((f["fired_unix"] for f in cause), default=now)
        stall = self._new_stall(fresh)
        if stall is not None:
            record["stall"] = stall
        append_lines(self.metrics_path, [record])
        self.trace.failed(now, sorted(int(rank) for rank in worker_exceptions))
        self.trackers.close()

    def _new_stall(self, fresh: list[dict]) -> dict | None:
        """The hang a rank's watch found that ended this worker group, if one did: on the
        stopped nodes' rows of the timeline, and how long after the hang fired."""
        stalls = [s for s in found_stalls(self.run_dir) if s["group"] not in self.stalls_told]
        if not stalls:
            return None
        stall = stalls[-1]
        self.stalls_told.update(s["group"] for s in stalls)
        hangs = [f["fired_unix"] for f in fresh if f["kind"] == "hang"]
        if hangs:
            stall["detected_after_s"] = stall["detected_unix"] - min(hangs)
        collective = stall["collective"]
        for node in stall["stopped"]:
            self.trace.instant(
                f"hang: did not enter {collective['kind']} #{collective['seq']}",
                stall["detected_unix"], [self.trace.pids.get(node["rank"], node["rank"] + 1)],
                {**collective, "epoch": node["epoch"], "step": node["step"],
                 "waited_s": stall["waited_s"]},
            )  # fmt: skip
        return stall

    def _record_recovery(self, epoch: int) -> None:
        now = time.time()
        append_lines(
            self.metrics_path,
            [{"kind": "recovered", "time_unix": now, "epoch": epoch,
              "recover_s": now - self.failed_at}],
        )  # fmt: skip
        self.trace.recovered(now, now - self.failed_at)
        self.failed_at = None

    def _record_preempt_checkpoint(self, marker: dict, checkpoint) -> None:
        record = {"kind": "preempt_checkpoint", "time_unix": time.time(),
                  "epoch": marker["epoch"], "step": marker["step"]}  # fmt: skip
        if checkpoint is not None:
            record["checkpoint"] = checkpoint.path
        append_lines(self.metrics_path, [record])

    def controller_preempting(self, info) -> None:
        """Ray Train's controller took in a drained node's notice (its PreemptingState)."""
        self.preempting = {
            "detected_unix": time.time(),
            "ranks": list(info.preempted_ranks),
            "nodes": node_labels(info.preempted_node_ids),
            "ray_node_ids": list(info.preempted_node_ids),
            "deadline_unix": info.deadline_ms / 1000 if info.deadline_ms else None,
            "ray_core_draining": draining_nodes(),
        }
        append_lines(self.metrics_path, [{"kind": "preempting", **self.preempting}])

    def controller_preempted(self, restarting: bool) -> None:
        """The controller left its PreemptingState: restarting the worker group, or not
        (the training finished first, or the run failed otherwise)."""
        preempting, self.preempting = self.preempting, None
        if not restarting or preempting is None:
            return
        now = time.time()
        fresh = self._fresh_faults(("preempt",))
        record = {"kind": "error", "time_unix": now, "ranks": {}, "preemption": preempting}
        if fresh:
            record["faults"] = fresh
            record["detect_s"] = preempting["detected_unix"] - min(f["fired_unix"] for f in fresh)
        self.failed_at = min((f["fired_unix"] for f in fresh), default=preempting["detected_unix"])
        append_lines(self.metrics_path, [record])
        self.trace.failed(now, preempting["ranks"])

    def _fresh_faults(self, kinds: tuple[str, ...] | None = None) -> list[dict]:
        """The faults (of kinds; None: any) fired since the last error record, now told."""
        fresh = [
            f
            for f in fired_faults(self.run_dir)
            if f["index"] not in self.faults_told and (kinds is None or f["kind"] in kinds)
        ]
        self.faults_told |= {f["index"] for f in fresh}
        return fresh


class PreemptionStates(ControllerCallback):
    """Tells the recorder when Ray Train's controller enters and leaves its preemption
    state (a UserCallback sees reports and worker errors only)."""

    def __init__(self, recorder: MetricsRecorder):
        self.recorder = recorder
        """The same recorder object the run's callbacks hold: they travel to the controller
        in one pickle."""

    def after_controller_state_update(self, previous_state, current_state) -> None:
        was, now = _state_name(previous_state), _state_name(current_state)
        if now == "PREEMPTING" and was != "PREEMPTING":
            self.recorder.controller_preempting(current_state.preemption_info)
        elif was == "PREEMPTING" and now != "PREEMPTING":
            self.recorder.controller_preempted(restarting=now in ("RESTARTING", "RESCHEDULING"))


def _state_name(state) -> str:
    return state._state_type.state_name if state is not None else ""


def node_labels(ray_node_ids: list[str]) -> list[str]:
    """The simulated nodes of these Ray nodes, by raysim's label (the id where unlabelled)."""
    import ray

    labels = {node["NodeID"]: node.get("Labels", {}) for node in ray.nodes()}
    return [labels.get(node_id, {}).get(NODE_LABEL, node_id) for node_id in ray_node_ids]


def draining_nodes() -> dict[str, int]:
    """Ray Core's drained nodes now, {node id: deadline in ms} (what Ray Train's watcher
    polls), kept with the record as Ray's own account of the drain."""
    import ray

    return dict(ray._private.state.state.get_draining_nodes())
