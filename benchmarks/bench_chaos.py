"""A chaos soak: one long run under a seeded random schedule of every fault kind, checked
for nothing lost.

    python benchmarks/bench_chaos.py [--minutes 30 | --epochs N] [--faults 30] [--seed 0]
        [--nodes 3]

A short fault-free run sizes the soak: enough epochs that the run without faults trains
for --minutes (or --epochs sets them: a calibration on a quiet machine sizes a soak that
a later load then stretches past the session). The schedule (pure, from --seed) spreads
--faults faults over those epochs, one an epoch from epoch 2 on, each kind of --kinds at
least once, the rest drawn at random; each at a random step and node. Then the soak runs
with checkpoints every epoch and max_failures for every fault that fails the worker
group, and the fault-free reference run after it: the same config (multi_node, elastic,
checkpoints), seed and epochs, without the faults. The kept result holds the schedule,
the seed and these checks:

- the run finished;
- metrics.jsonl has every epoch once, and each epoch a rank line from each of its nodes
  once;
- the weights (param_checksum) of every epoch trained on all the nodes equal the
  reference's, so the final weights do too unless a node was lost;
- no process below this one is left once the run has ended (raysim.procfs), and no
  placement group is alive when the run's Ray cluster is about to stop (Ray's placement
  group table, read from the GCS just before raysim's SimCluster ends it);
- each fault's cost from summary.json["faults"]: detected_after_s, lost_steps and, for a
  preemption, lost node-steps and node-seconds.

Where resume is exact and where it is not: slow_node and data_stall fail nothing and
change no weight; worker_crash, oom and hang restart the worker group from the last
epoch's checkpoint and redo the steps since, bit-exactly; preempt checkpoints just in
time on its notice and resumes at that step, bit-exactly. node_loss takes a node away
for good (the run is elastic, min_nodes = nodes - 1): the epochs from the restart on train
on fewer nodes and differ from any fault-free run of the config, so they are left out of
the weight check and the schedule puts node_loss last.

Why not `raysim up`'s standing cluster: it is one Ray node, every simulated node on it
(single_host; `topology: multi_node` with an address is refused), so no simulated node's
Ray node can be lost or drained. The soak uses the embedded multi_node topology: a head
plus one loopback Ray node per simulated node, which node_loss removes and preempt drains
through Ray Core. The run is in this process (raysim.run), so its Ray cluster's processes
are this one's children.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

from common import parse, provenance
from formatting import Renderer, num, table

import raysim
from raysim import experiment
from raysim.cluster.local import SimCluster
from raysim.config import load_config
from raysim.config.faults import FAULT_KINDS, LATE_KINDS
from raysim.procfs import descendants, is_running
from raysim.rundir import epoch_lines, rank_lines, read_lines

STEPS = 20
"""Steps per epoch per node (max_steps_per_epoch)."""
COLLECTIVE_TIMEOUT_S = 15.0
SLOW_S = (2.0, 5.0)
"""slow_node: the stall, drawn from this range."""
DATA_STALL_S = 0.3
"""data_stall: each later batch of the epoch comes this much late."""
NOTICE_S = 5.0
WORKER_START_TIMEOUT_S = 10.0
"""After a node_loss, how long Ray Train waits for the lost node before going on without."""


def schedule(seed: int, faults: int, epochs: int, nodes: int, kinds: list[str]) -> list[dict]:
    """The faults, one an epoch from epoch 2 (epoch 1 has no checkpoint yet), each of
    kinds at least once, node_loss at most once and last (it shrinks the run for good)."""
    rng = random.Random(seed)
    if faults < len(kinds):
        raise SystemExit(f"bench_chaos: {faults} faults cannot hold {len(kinds)} kinds: use "
                         f"--faults {len(kinds)} or more, or fewer --kinds")  # fmt: skip
    if faults > epochs - 1:
        raise SystemExit(f"bench_chaos: {faults} faults need {faults + 1} epochs, the run has "
                         f"{epochs}: use more --minutes or fewer --faults")  # fmt: skip
    repeatable = [k for k in kinds if k != "node_loss"]
    drawn = [k for k in kinds if k != "node_loss"]
    last = ["node_loss"] if "node_loss" in kinds else []
    drawn += [rng.choice(repeatable) for _ in range(faults - len(drawn) - len(last))]
    rng.shuffle(drawn)
    chosen = sorted(rng.sample(range(2, epochs + 1), len(drawn) + len(last)))
    pairs = zip(drawn + last, chosen, strict=True)
    return [_fault(rng, kind, epoch, nodes) for kind, epoch in pairs]


def _fault(rng: random.Random, kind: str, epoch: int, nodes: int) -> dict:
    fault = {"kind": kind, "rank": rng.randrange(nodes), "epoch": epoch,
             "step": rng.randint(1, STEPS - 2)}  # fmt: skip
    if kind == "slow_node":
        fault["seconds"] = round(rng.uniform(*SLOW_S), 1)
    if kind == "data_stall":
        fault["seconds"] = DATA_STALL_S
    if kind == "preempt":
        fault["notice_s"] = NOTICE_S
    return fault


def soak_config(run_dir: str, name: str, args, epochs: int, faults: list[dict],
                elastic: bool = False, **more):  # fmt: skip
    """The soak's config; the reference is the same without faults."""
    failing = sum(f["kind"] not in LATE_KINDS for f in faults)
    values = dict(
        num_nodes=args.nodes, num_epochs=epochs, max_steps_per_epoch=STEPS, image_size=16,
        batch_size=8, device="cpu", seed=args.seed, checkpoint_every=1, num_to_keep=2,
        max_failures=failing + 2, collective_timeout_s=COLLECTIVE_TIMEOUT_S,
        run_dir=run_dir, run_name=name, faults=faults,
    )  # fmt: skip
    if elastic:
        values.update(min_nodes=args.nodes - 1, worker_start_timeout_s=WORKER_START_TIMEOUT_S)
    return load_config(**{**values, **more})


class WatchedCluster(SimCluster):
    """raysim's cluster, which reads Ray's placement group table just before it stops."""

    alive_at_exit: list[dict] | None = None

    def __exit__(self, *exc) -> None:
        import ray

        if ray.is_initialized():
            WatchedCluster.alive_at_exit = alive_placement_groups()
        super().__exit__(*exc)


def alive_placement_groups(wait_s: float = 10.0) -> list[dict]:
    """Placement groups not yet REMOVED, after up to wait_s for a removal under way."""
    from ray.util import placement_group_table

    deadline = time.monotonic() + wait_s
    while True:
        alive = [
            {"id": pg_id, "state": pg["state"], "name": pg.get("name", "")}
            for pg_id, pg in placement_group_table().items()
            if pg["state"] != "REMOVED"
        ]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


def left_processes(wait_s: float = 15.0) -> list[dict]:
    """This process's descendants still running wait_s after the run ended."""
    deadline = time.monotonic() + wait_s
    while (left := [p for p in descendants(os.getpid()) if is_running(p)]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.5)
    return [{"pid": pid, "command": _command(pid)} for pid in left]


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return ""


def timed_run(cfg) -> tuple[raysim.RunResult | None, float, str | None]:
    start = time.perf_counter()
    try:
        result = raysim.run(cfg, out=None)
    except raysim.RunFailedError as err:
        return None, time.perf_counter() - start, str(err).splitlines()[0]
    return result, time.perf_counter() - start, None


def epoch_seconds(run_dir: str, args) -> float:
    """A fault-free 2-epoch run's second epoch: its training and evaluation."""
    result, _, error = timed_run(soak_config(run_dir, "calibrate", args, 2, []))
    if result is None:
        raise SystemExit(f"bench_chaos: the calibration run failed: {error}")
    second = epoch_lines(read_lines(result.run_dir / "metrics.jsonl"))[1]
    return second["epoch_time_s"] + second["eval_time_s"]


def recorded_once(records: list[dict], epochs: int) -> dict:
    """Every epoch recorded once, and once by each node that trained it."""
    numbers = [e["epoch"] for e in epoch_lines(records)]
    problems = []
    if numbers != list(range(1, epochs + 1)):
        problems.append(f"epoch lines {numbers}, not 1..{epochs} once each")
    for epoch in epoch_lines(records):
        nodes = [r["node_id"] for r in rank_lines(records) if r["epoch"] == epoch["epoch"]]
        if sorted(nodes) != sorted(set(nodes)) or len(nodes) != epoch["world_size"]:
            problems.append(f"epoch {epoch['epoch']}: rank lines from {sorted(nodes)}, "
                            f"world size {epoch['world_size']}")  # fmt: skip
    return {"ok": not problems, "problems": problems}


def same_weights(records: list[dict], reference: list[dict], nodes: int) -> dict:
    """Each epoch trained on every node against the reference's: equal checksums."""
    ours = {e["epoch"]: e for e in epoch_lines(records)}
    theirs = {e["epoch"]: e["param_checksum"] for e in epoch_lines(reference)}
    full = [n for n, e in ours.items() if e["world_size"] == nodes]
    differ = [n for n in full if ours[n]["param_checksum"] != theirs.get(n)]
    shrunk = sorted(set(ours) - set(full))
    last = max(theirs, default=None)
    final = None if last in shrunk or last not in ours else not differ and last in full
    return {"ok": not differ, "epochs_compared": len(full), "differ": differ,
            "fewer_nodes_epochs": shrunk, "final_weights_equal": final}  # fmt: skip


def fault_costs(summary: dict) -> list[dict]:
    keys = ("kind", "rank", "epoch", "step", "detected_after_s", "lost_steps",
            "lost_node_steps", "lost_node_seconds", "went_on")  # fmt: skip
    return [{k: f.get(k) for k in keys} for f in summary.get("faults", [])]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes",
        type=float,
        default=30.0,
        help="how long the fault-free run of the soak's config trains",
    )
    parser.add_argument("--epochs", type=int, help="the soak's epochs (default: from --minutes)")
    parser.add_argument("--faults", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--kinds", default=",".join(FAULT_KINDS))
    parser.add_argument("--out", default="benchmarks/results/bench_chaos.json")
    args = parse(parser, argv)
    kinds = args.kinds.split(",")
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown:
        raise SystemExit(f"bench_chaos: --kinds {unknown}: use {', '.join(FAULT_KINDS)}")
    with tempfile.TemporaryDirectory() as run_dir:
        epoch_s = None if args.epochs else epoch_seconds(run_dir, args)
        epochs = args.epochs or max(args.faults + 1, math.ceil(args.minutes * 60 / epoch_s))
        faults = schedule(args.seed, args.faults, epochs, args.nodes, kinds)
        same = {"elastic": "node_loss" in kinds, "topology": "multi_node"}
        with mock.patch.object(experiment, "SimCluster", WatchedCluster):
            soak, soak_s, error = timed_run(
                soak_config(run_dir, "soak", args, epochs, faults, **same)
            )
        placement_groups = WatchedCluster.alive_at_exit
        processes = left_processes()
        records = read_lines(Path(run_dir) / "soak" / "metrics.jsonl")
        summary = json.loads((Path(run_dir) / "soak" / "summary.json").read_text())
        reference, reference_s, _ = timed_run(
            soak_config(run_dir, "reference", args, epochs, [], **same)
        )
        reference_records = read_lines(reference.run_dir / "metrics.jsonl") if reference else []
    checks = {
        "finished": {"ok": soak is not None and summary.get("status") == "finished",
                     "status": summary.get("status"), "error": error},
        "epochs_recorded_once": recorded_once(records, epochs),
        "weights_equal_reference": same_weights(records, reference_records, args.nodes),
        "no_process_left": {"ok": not processes, "left": processes},
        "no_placement_group_left": {"ok": placement_groups == [],
                                    "alive_at_exit": placement_groups},
        "every_fault_fired": {"ok": len(summary.get("faults", [])) == len(faults),
                              "scheduled": len(faults), "fired": len(summary.get("faults", []))},
    }  # fmt: skip
    results = {
        **provenance(args.allow_dirty),
        "seed": args.seed,
        "schedule": faults,
        "epochs": epochs,
        "nodes": args.nodes,
        "steps_per_epoch": STEPS,
        "calibrated_epoch_s": epoch_s,
        "soak_wall_s": soak_s,
        "reference_wall_s": reference_s,
        "checks": checks,
        "all_ok": all(c["ok"] for c in checks.values()),
        "faults": fault_costs(summary),
        "settings": vars(args),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps({k: results[k] for k in ("all_ok", "checks", "soak_wall_s")}, indent=2))
    return results


# --- BENCHMARKS.md's tables from this bench's results -------------------------


def chaos(data: dict | None) -> str:
    """The checks, "not measured" until the soak's file exists."""
    header = ["chaos soak", ""]
    if data is None:
        return table(header, [["≥ 30 faults over ≥ 30 minutes", "not measured"]])
    checks = data["checks"]
    weights = checks["weights_equal_reference"]
    rows = [
        ["seed, nodes, epochs × steps", f"{data['seed']}, {data['nodes']}, "
         f"{data['epochs']} × {data['steps_per_epoch']}"],
        ["faults fired / scheduled", f"{checks['every_fault_fired']['fired']} / "
         f"{checks['every_fault_fired']['scheduled']}"],
        ["soak wall (fault-free reference)",
         f"{data['soak_wall_s'] / 60:.1f} min ({data['reference_wall_s'] / 60:.1f} min)"],
        ["run finished", _yes(checks["finished"]["ok"])],
        ["every epoch recorded once, once per node", _yes(checks["epochs_recorded_once"]["ok"])],
        [f"weights equal the reference ({weights['epochs_compared']} full-size epochs)",
         _yes(weights["ok"])],
        ["final weights equal", {True: "yes", False: "NO"}.get(
            weights["final_weights_equal"], "not comparable: a node was lost")],
        ["no process left", _yes(checks["no_process_left"]["ok"])],
        ["no placement group left", _yes(checks["no_placement_group_left"]["ok"])],
    ]  # fmt: skip
    return table(header, rows)


def chaos_costs(data: dict | None) -> str:
    """Per fault kind: how many, when raysim told it (median), steps and node-seconds lost."""
    header = ["fault", "count", "detected after, median", "lost steps, total",
              "lost node-seconds (preempt)"]  # fmt: skip
    if data is None:
        return table(header, [["—", "not measured", "", "", ""]])
    rows = []
    for kind in FAULT_KINDS:
        mine = [f for f in data["faults"] if f["kind"] == kind]
        if not mine:
            continue
        told = [f["detected_after_s"] for f in mine if f["detected_after_s"] is not None]
        lost = [f["lost_steps"] for f in mine if f["lost_steps"] is not None]
        seconds = [f["lost_node_seconds"] for f in mine if f["lost_node_seconds"] is not None]
        rows.append([kind, str(len(mine)),
                     f"{statistics.median(told):.1f} s" if told else "—",
                     str(sum(lost)) if lost else "—",
                     num(sum(seconds), 1) if seconds else "—"])  # fmt: skip
    return table(header, rows)


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


TABLES: dict[str, tuple[str, Renderer]] = {
    "chaos": ("bench_chaos.json", chaos),
    "chaos_costs": ("bench_chaos.json", chaos_costs),
}
"""BENCHMARKS.md block name: (result file, renderer); tables.py gathers them."""


if __name__ == "__main__":
    main()
