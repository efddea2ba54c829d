"""Time to first step: what raysim adds to Ray Train's own start-up floor.

    python benchmarks/bench_startup.py [--nodes 4] [--repeats 3]

One warm local Ray (started first, not timed). Then each repeat, in alternating order:
  ray-train  a bare TorchTrainer with the same workers and resources and a trivial
             function: fit() start to the function's first line (Ray Train's floor)
  raysim     raysim.run with a trivial train_fn on the same cluster: run() start to
             the function's first line (raysim's planning, checks, run directory,
             callback, node set-up: threads, device, memory cap, included)
The first line is the earliest time any worker wrote to a marker file; the phases
before it come from the Train controller's own log (controller up, worker group
requested, worker group started).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

MARK = Path(tempfile.gettempdir()) / "raysim-startup-mark"


def _mark_first_line() -> None:
    with open(MARK, "a") as handle:
        handle.write(f"{time.time()}\n")


def bare_fn(config: dict) -> None:
    _mark_first_line()


def raysim_fn(config: dict) -> None:
    from raysim import worker

    _mark_first_line()
    worker.report({"epoch": 1})


def first_line_after(start: float) -> float:
    return min(float(line) for line in MARK.read_text().split()) - start


CONTROLLER_EVENTS = {
    "controller_up_s": "Requesting resources",
    "worker_group_requested_s": "Attempting to start training worker group",
    "worker_group_started_s": "Started training worker group",
}


def controller_phases(start: float) -> dict[str, float]:
    """Seconds from fit()/run() to the controller's own log events, from its JSON log."""
    from datetime import datetime

    import ray

    logs = Path(ray._private.worker.global_worker.node.get_session_dir_path()) / "logs" / "train"
    newest = max(logs.glob("ray-train-app-controller-*.log"), key=lambda p: p.stat().st_mtime)
    phases = {}
    for line in newest.read_text().splitlines():
        record = json.loads(line)
        stamp = datetime.strptime(record["asctime"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for name, text in CONTROLLER_EVENTS.items():
            if name not in phases and record["message"].startswith(text):
                phases[name] = stamp - start
    return phases


def bare_ray_train(plan, storage: str) -> float:
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    trainer = TorchTrainer(
        bare_fn,
        torch_config=TorchConfig(backend=plan.backend),
        scaling_config=ray.train.ScalingConfig(
            num_workers=plan.num_workers, resources_per_worker=plan.resources_per_worker
        ),
        run_config=ray.train.RunConfig(name=f"bare-{time.time_ns()}", storage_path=storage),
    )
    MARK.unlink(missing_ok=True)
    start = time.time()
    trainer.fit()
    return {**controller_phases(start), "first_line_s": first_line_after(start)}


def raysim_run(cfg) -> float:
    import raysim

    MARK.unlink(missing_ok=True)
    start = time.time()
    raysim.run(cfg, train_fn=raysim_fn, out=None)
    return {**controller_phases(start), "first_line_s": first_line_after(start)}


def main(argv: list[str] | None = None) -> dict:
    import raysim
    from raysim.cluster import SimCluster, detect_hardware
    from raysim.config import replace
    from raysim.plan import make_plan

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    times: dict[str, list[dict]] = {"ray-train": [], "raysim": []}
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = raysim.load_config(num_nodes=args.nodes, device="cpu", run_dir=run_dir)
        plan = make_plan(cfg, detect_hardware())
        with SimCluster(plan):
            for repeat in range(args.repeats):
                runs = {
                    "ray-train": lambda: bare_ray_train(plan, run_dir),
                    "raysim": lambda r=repeat: raysim_run(replace(cfg, run_name=f"startup-{r}")),
                }
                # Alternate which goes first: a run warms Ray's worker pool for the next.
                for name in sorted(runs, reverse=bool(repeat % 2)):
                    times[name].append(runs[name]())
                print(json.dumps({k: v[-1] for k, v in times.items()}), flush=True)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "nodes": args.nodes,
        "runs": times,
        "median_s": {
            setup: {
                phase: statistics.median(run[phase] for run in runs)
                for phase in [*CONTROLLER_EVENTS, "first_line_s"]
            }
            for setup, runs in times.items()
        },
    }
    medians = result["median_s"]
    result["raysim_adds_s"] = (
        medians["raysim"]["first_line_s"] - medians["ray-train"]["first_line_s"]
    )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "bench_startup.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result["median_s"]), f"raysim adds {result['raysim_adds_s']:.2f} s")
    return result


if __name__ == "__main__":
    main()
