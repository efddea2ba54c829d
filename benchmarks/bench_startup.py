"""Start-up to the first training step: raysim against a stock TorchTrainer.

    python benchmarks/bench_startup.py [--nodes 4] [--repeats 2] [--parts cold,warm,sweep]

Every measurement is a fresh Python process, timed from that process's start:
  ray-train      a stock TorchTrainer (without the three start-up changes raysim makes to
                 Ray Train: helper actors left out, imports during Ray's start, the
                 autoscaling coordinator started before fit()), same workers and
                 resources (gloo, the CPU and the device share of raysim's plan), a
                 function that does nothing: to its first line
  ray-train-ddp  the same, its function wrapping a one-layer model in DDP
                 (prepare_model) and taking one fused-Adam step: to that step's start
                 (DDP imports torch._dynamo, ~2 s of CPU)
  raysim         `raysim.run` of the built-in experiment (digits, ResNet18): to its first
                 training step, with raysim's own breakdown of where the time went
cold: each process starts its own Ray; warm: all join one standing cluster (`raysim up`).
sweep: a 3-point `raysim sweep` in one process against the same 3 points as 3 processes.
The order of the cases alternates between repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import parse, provenance, timed_raysim
from formatting import Renderer, Skip, dig, each, num, signed, table

CASES = ("ray-train", "ray-train-ddp", "raysim")


def _stamp(marker: str, name: str) -> None:
    with open(marker, "a") as handle:
        handle.write(json.dumps({name: time.time()}) + "\n")


def bare_fn(config: dict) -> None:
    _stamp(config["marker"], "first_line")
    if not config["ddp"]:
        return
    import ray.train.torch
    import torch

    model = ray.train.torch.prepare_model(torch.nn.Linear(16, 2))
    optimizer = torch.optim.Adam(model.parameters(), fused=True)
    _stamp(config["marker"], "first_step_start")
    model(torch.randn(8, 16)).sum().backward()
    optimizer.step()
    _stamp(config["marker"], "first_step_end")


def small_config(nodes: int, run_dir: str, address: str | None, **overrides):
    import raysim

    return raysim.load_config(
        num_nodes=nodes, device="cpu", num_epochs=1, max_steps_per_epoch=3,
        run_dir=run_dir, address=address, **overrides,
    )  # fmt: skip


def measure_bare(nodes: int, run_dir: str, address: str | None, ddp: bool) -> dict:
    """One bare TorchTrainer in this process: seconds from the process's start."""
    if address is not None:  # `raysim up` starts Ray with token authentication: send it
        os.environ["RAY_AUTH_MODE"] = "token"
    import ray
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from raysim.cluster import detect_hardware
    from raysim.plan import make_plan
    from raysim.procfs import process_start_unix

    started = process_start_unix()
    plan = make_plan(small_config(nodes, run_dir, address), detect_hardware())
    if address is None:
        ray.init(address="local", num_cpus=plan.cluster_cpus,
                 resources=dict(plan.cluster_resources), include_dashboard=False)  # fmt: skip
    else:
        ray.init(address=address)
    marker = Path(run_dir) / f"marks-{time.time_ns()}.jsonl"
    TorchTrainer(
        bare_fn,
        train_loop_config={"marker": str(marker), "ddp": ddp},
        torch_config=TorchConfig(backend=plan.backend),
        scaling_config=ray.train.ScalingConfig(
            num_workers=plan.num_workers, resources_per_worker=plan.resources_per_worker
        ),
        run_config=ray.train.RunConfig(name=f"bare-{time.time_ns()}", storage_path=run_dir),
    ).fit()
    ray.shutdown()
    latest: dict[str, float] = {}  # the slowest worker's mark: a step waits for them all
    for line in marker.read_text().splitlines():
        for name, unix in json.loads(line).items():
            latest[name] = max(latest.get(name, 0.0), unix)
    return {f"{name}_s": unix - started for name, unix in latest.items()}


def measure_raysim(nodes: int, run_dir: str, address: str | None) -> dict:
    import raysim

    summary = raysim.run(small_config(nodes, run_dir, address), out=None).summary
    return {
        "first_step_s": summary["time_to_first_step_s"],
        "stages": {s["stage"]: s["seconds"] for s in summary["startup"]["stages"]},
    }


def run_case(case: str, nodes: int, run_dir: str, address: str | None) -> dict:
    """A case in a fresh process; its figures come back as the last line it prints (it
    writes no result: the tree was checked in this process)."""
    command = [sys.executable, __file__, "--case", case, "--nodes", str(nodes), "--allow-dirty",
               "--run-dir", run_dir, *(["--address", address] if address else [])]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{case} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def sweep_against_single_runs(nodes: int, run_dir: str, repeats: int) -> dict:
    """Seconds for 3 points as one `raysim sweep` and as 3 `raysim run`s, alternating."""
    points = ["8", "16", "32"]
    common = ["--num-epochs", "1", "--max-steps-per-epoch", "3", "--device", "cpu",
              "--run-dir"]  # fmt: skip

    def one_sweep(tag: str) -> float:
        return timed_raysim(["sweep", *common, f"{run_dir}/{tag}", "--run-name", tag,
                             "--num-nodes", str(nodes), "--batch-size", ",".join(points)],
                            timeout=1800)  # fmt: skip

    def single_runs(tag: str) -> float:
        return sum(
            timed_raysim(["run", *common, f"{run_dir}/{tag}", "--run-name", f"b{batch}",
                          "--num-nodes", str(nodes), "--batch-size", batch], timeout=900)
            for batch in points
        )  # fmt: skip

    times: dict[str, list[float]] = {"sweep": [], "single_runs": []}
    for repeat in range(repeats):
        order = ["sweep", "single_runs"] if repeat % 2 == 0 else ["single_runs", "sweep"]
        for name in order:
            measure = one_sweep if name == "sweep" else single_runs
            times[name].append(measure(f"{name}-{repeat}"))
        print(json.dumps({k: v[-1] for k, v in times.items()}), flush=True)
    return {
        "points": len(points),
        "seconds": times,
        "median_s": {name: statistics.median(v) for name, v in times.items()},
        "saved_per_point_after_the_first_s": (
            statistics.median(times["single_runs"]) - statistics.median(times["sweep"])
        )
        / (len(points) - 1),
    }


def medians(runs: list[dict]) -> dict:
    keys = [k for k in runs[0] if k != "stages"]
    result = {k: statistics.median(r[k] for r in runs) for k in keys}
    if "stages" in runs[0]:
        stages = runs[0]["stages"]
        result["stages"] = {s: statistics.median(r["stages"][s] for r in runs) for s in stages}
    return result


def startup_part(mode: str, nodes: int, repeats: int, run_dir: str) -> dict:
    from raysim.cluster.standing import down, up

    address = up(dashboard_port=0).address if mode == "warm" else None
    try:
        runs: dict[str, list[dict]] = {case: [] for case in CASES}
        for repeat in range(repeats):
            for case in CASES if repeat % 2 == 0 else reversed(CASES):
                # raysim joins `raysim up`'s cluster as README says: --address auto
                joins = "auto" if address is not None and case == "raysim" else address
                runs[case].append(run_case(case, nodes, run_dir, joins))
            print(mode, json.dumps({k: v[-1] for k, v in runs.items()}), flush=True)
    finally:
        if address is not None:
            down()
    median = {case: medians(r) for case, r in runs.items()}
    return {
        "runs": runs,
        "median_s": median,
        "raysim_first_step_minus_stock_first_line_s": (
            median["raysim"]["first_step_s"] - median["ray-train"]["first_line_s"]
        ),
        "raysim_first_step_minus_stock_ddp_step_s": (
            median["raysim"]["first_step_s"] - median["ray-train-ddp"]["first_step_start_s"]
        ),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--parts", default="cold,warm,sweep")
    parser.add_argument("--out", default="benchmarks/results/bench_startup.json")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    args = parse(parser, argv)
    if args.case:  # one measurement, in this fresh process
        figures = (
            measure_raysim(args.nodes, args.run_dir, args.address)
            if args.case == "raysim"
            else measure_bare(args.nodes, args.run_dir, args.address, args.case == "ray-train-ddp")
        )
        print(json.dumps(figures))
        return figures
    result = {**provenance(args.allow_dirty), "nodes": args.nodes, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as home:
        os.environ["RAYSIM_HOME"] = home  # the standing cluster's state stays in here
        for part in args.parts.split(","):
            if part == "sweep":
                result["sweep"] = sweep_against_single_runs(2, home, args.repeats)
            else:
                result[part] = startup_part(part, args.nodes, args.repeats, home)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k in ("cold", "warm", "sweep")}, indent=1))
    return result


# --- BENCHMARKS.md's tables from this bench's results -------------------------


STOCK_FIRST_LINE = ("ray-train", "first_line_s")
STOCK_DDP_STEP = ("ray-train-ddp", "first_step_start_s")
RAYSIM_STEP = ("raysim", "first_step_s")
STARTUP_ROWS = (  # label, the medians it reads: one, or raysim's less the stock one
    ("stock TorchTrainer: function's first line", (STOCK_FIRST_LINE,)),
    ("stock TorchTrainer: first DDP step", (STOCK_DDP_STEP,)),
    ("raysim: first training step", (RAYSIM_STEP,)),
    ("raysim − stock first line", (RAYSIM_STEP, STOCK_FIRST_LINE)),
    ("raysim − stock first DDP step", (RAYSIM_STEP, STOCK_DDP_STEP)),
)


STARTUP_PARTS = ("cold", "warm")


def startup_parts(data: dict) -> list[str]:
    """The parts the file holds; the file of before the cold/warm split gives no block."""
    if "cold" not in data:
        raise Skip("no 'cold' part: the file has the old shape")
    return [p for p in STARTUP_PARTS if p in data]


def startup(data: dict) -> str:
    parts = startup_parts(data)
    rows = []
    for label, keys in STARTUP_ROWS:
        medians = [[dig(data[p]["median_s"], key) for key in keys] for p in parts]
        form = num if len(keys) == 1 else signed  # a difference is signed
        rows.append([label, *[f"{form(m[0] - sum(m[1:]), 2)} s" for m in medians]])
    title = f"median of {data['repeats']}, {data['nodes']} nodes"
    return table([title, *parts], rows)


def startup_stages(data: dict) -> str:
    parts = startup_parts(data)
    stages = [data[p]["median_s"]["raysim"]["stages"] for p in parts]
    labels = list(dict.fromkeys(label for part in stages for label in part))
    rows = [
        [label, *[f"{s[label]:.2f} s" if label in s else "–" for s in stages]] for label in labels
    ]
    return table(["raysim's stages (median)", *parts], rows)


def startup_sweep(data: dict) -> str:
    startup_parts(data)
    if "sweep" not in data:
        raise Skip("no 'sweep' part in the file")
    data = data["sweep"]
    seconds, median = data["seconds"], data["median_s"]
    rows = [
        [
            f"one `raysim sweep` of {data['points']} points",
            f"{median['sweep']:.1f} s ({each(seconds['sweep'], 1)})",
        ],
        [
            f"{data['points']} `raysim run`s",
            f"{median['single_runs']:.1f} s ({each(seconds['single_runs'], 1)})",
        ],
        ["saved per point after the first", f"{data['saved_per_point_after_the_first_s']:.1f} s"],
    ]
    return table(["sweep", "seconds, median (each repeat)"], rows)


TABLES: dict[str, tuple[str, Renderer]] = {
    "startup": ("bench_startup.json", startup),
    "startup_stages": ("bench_startup.json", startup_stages),
    "startup_sweep": ("bench_startup.json", startup_sweep),
}
"""BENCHMARKS.md block name: (result file, renderer); tables.py gathers them."""


if __name__ == "__main__":
    main()
