"""Regenerate every kept result in benchmarks/results/, or check quickly that each still runs.

    python benchmarks/run_all.py [--only NAME,...] [--quick] [--out DIR] [--list] [--allow-dirty]

Each benchmark is a fresh process, one after another (they would share the cores
otherwise). The kept results are what BENCHMARKS.md and README quote; every one
records its commit, exact command, machine, versions and date (common.provenance).
--quick runs each at tiny sizes into --out (default: a temporary folder), never over
the kept results: it checks the harness, not the numbers. A benchmark that needs a GPU
is skipped, said so, where there is none. --allow-dirty (tests only) is handed to each.
A/B comparisons are not rows here: bench_ab.py and bench_cli_start.py take the commits
on their command line, and a finished one is kept as its result file, which records
its command.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import require_clean

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    args: tuple[str, ...]
    """Flags of the kept run; {out} is the results folder."""
    quick: tuple[str, ...]
    """Flags of the quick run (tiny sizes)."""
    results: tuple[str, ...]
    """The kept files it writes, in the results folder."""
    needs_gpu: bool = False


BENCHMARKS = (
    Benchmark("core", "bench_core.py", ("--epochs", "3", "--repeats", "2", "--out", "{out}"),
              ("--quick", "--out", "{out}"), ("bench_core.json",)),
    Benchmark("core-data", "bench_core.py", ("--only", "data", "--out", "{out}"),
              ("--quick", "--only", "data", "--out", "{out}"), ("bench_core_data.json",)),
    *(Benchmark(f"core-serial-{px}", "bench_core.py",
                ("--only", "serial", "--image-size", str(px), "--repeats", "4", "--out", "{out}"),
                ("--quick", "--only", "serial", "--out", "{out}"),
                (f"bench_core_serial_{px}px.json",)) for px in (32, 16)),
    Benchmark("core-no-exchange", "bench_core.py",
              ("--only", "no-exchange", "--repeats", "4", "--out", "{out}"),
              ("--quick", "--only", "no-exchange", "--out", "{out}"),
              ("bench_core_no_exchange_32px.json",)),
    Benchmark("startup", "bench_startup.py",
              ("--nodes", "4", "--repeats", "3", "--out", "{out}/bench_startup.json"),
              ("--nodes", "2", "--repeats", "1", "--parts", "cold",
               "--out", "{out}/bench_startup.json"),
              ("bench_startup.json",)),
    Benchmark("imports", "bench_imports.py",
              ("--repeats", "5", "--out", "{out}/bench_imports.json"),
              ("--repeats", "1", "--out", "{out}/bench_imports.json"), ("bench_imports.json",)),
    Benchmark("node-work", "bench_node_work.py",
              ("--repeats", "5", "--nodes", "4", "--out", "{out}/bench_node_work.json"),
              ("--repeats", "1", "--out", "{out}/bench_node_work.json"), ("bench_node_work.json",)),
    Benchmark("network", "bench_network.py", ("--out", "{out}"),
              ("--nodes", "2", "--networks", "10gbe", "--steps", "3", "--out", "{out}"),
              ("bench_network.json",)),
    Benchmark("switches-cpu", "bench_switches.py", ("--device", "cpu", "--out", "{out}"),
              ("--device", "cpu", "--steps", "2", "--batch-size", "8", "--image-size", "16",
               "--out", "{out}"), ("bench_switches_cpu.json",)),
    Benchmark("switches-cuda", "bench_switches.py", ("--device", "cuda", "--out", "{out}"),
              ("--device", "cuda", "--steps", "2", "--batch-size", "8", "--out", "{out}"),
              ("bench_switches_cuda.json",), needs_gpu=True),
    Benchmark("topology", "bench_topology.py", ("--out", "{out}"),
              ("--nodes", "2", "--epochs", "2", "--repeats", "1", "--out", "{out}"),
              ("bench_topology.json",)),
    Benchmark("measure", "bench_measure.py",
              ("--nodes", "4", "--epochs", "3", "--steps", "40", "--repeats", "4",
               "--out", "{out}/bench_measure.json"),
              ("--nodes", "2", "--epochs", "2", "--steps", "3", "--repeats", "1",
               "--out", "{out}/bench_measure.json"), ("bench_measure.json",)),
    Benchmark("measure-20steps", "bench_measure.py",
              ("--nodes", "4", "--epochs", "3", "--steps", "20", "--repeats", "3",
               "--out", "{out}/bench_measure_20steps.json"),
              ("--nodes", "2", "--epochs", "2", "--steps", "3", "--repeats", "1",
               "--out", "{out}/bench_measure_20steps.json"), ("bench_measure_20steps.json",)),
    Benchmark("measure-hooks", "bench_measure_hooks.py",
              ("--identical", "--pairs", "2400", "--full-pairs", "600",
               "--out", "{out}/bench_measure_hooks.json"),
              ("--pairs", "3", "--full-pairs", "2", "--out", "{out}/bench_measure_hooks.json"),
              ("bench_measure_hooks.json",)),
    Benchmark("measure-hooks-launched", "bench_measure_hooks.py",
              ("--launched", "--identical", "--pairs", "2400", "--full-pairs", "600",
               "--out", "{out}/bench_measure_hooks_launched.json"),
              ("--launched", "--pairs", "3", "--full-pairs", "2",
               "--out", "{out}/bench_measure_hooks_launched.json"),
              ("bench_measure_hooks_launched.json",)),
    Benchmark("trace", "bench_trace.py",
              ("--nodes", "2", "--epochs", "3", "--steps", "20", "--repeats", "4",
               "--out", "{out}/bench_trace.json"),
              ("--nodes", "2", "--epochs", "2", "--steps", "3", "--repeats", "1",
               "--out", "{out}/bench_trace.json"), ("bench_trace.json",)),
    Benchmark("projection", "bench_projection.py", ("--out", "{out}/projection_validation.json"),
              ("--out", "{out}/projection_validation.json"), ("projection_validation.json",)),
    Benchmark("projection-fsdp", "bench_projection_fsdp.py",
              ("--out", "{out}/projection_fsdp_validation.json"),
              ("--out", "{out}/projection_fsdp_validation.json"),
              ("projection_fsdp_validation.json",)),
    Benchmark("readme", "bench_readme.py", ("--out", "{out}"), ("--quick", "--out", "{out}"),
              ("readme_main_job.json", "fit_readme.json")),
    Benchmark("suite", "bench_suite.py", ("--out", "{out}/test_suite.json"),
              ("--quick", "--out", "{out}/test_suite.json"), ("test_suite.json",)),
    Benchmark("scale", "bench_scale.py", ("--out", "{out}/bench_scale.json"),
              ("--nodes", "2", "--steps", "2", "--out", "{out}/bench_scale.json"),
              ("bench_scale.json",)),
    Benchmark("scale-own", "bench_scale.py",
              ("--nodes", "32", "--train-fn", "examples.custom_train_loop:train_fn",
               "--gpu-fraction", "0.03", "--memory-fraction", "0.002",
               "--out", "{out}/bench_scale_own.json"),
              ("--nodes", "2", "--steps", "2", "--train-fn", "examples.custom_train_loop:train_fn",
               "--out", "{out}/bench_scale_own.json"), ("bench_scale_own.json",)),
    Benchmark("worker-memory", "bench_worker_memory.py",
              ("--nodes", "16", "--out", "{out}/bench_worker_memory.json"),
              ("--nodes", "2", "--steps", "2", "--repeats", "1",
               "--out", "{out}/bench_worker_memory.json"), ("bench_worker_memory.json",)),
    Benchmark("estimate", "bench_estimate.py", ("--out", "{out}/bench_estimate.json"),
              ("--models", "mlp", "--batch", "8", "--out", "{out}/bench_estimate.json"),
              ("bench_estimate.json",)),
    Benchmark("sharded", "bench_sharded.py", ("--out", "{out}/bench_sharded.json"),
              ("--nodes", "2", "--out", "{out}/bench_sharded.json"), ("bench_sharded.json",)),
    Benchmark("chaos", "bench_chaos.py",
              ("--minutes", "30", "--faults", "30", "--out", "{out}/bench_chaos.json"),
              ("--minutes", "1", "--faults", "3", "--kinds", "worker_crash,slow_node,data_stall",
               "--nodes", "2", "--out", "{out}/bench_chaos.json"), ("bench_chaos.json",)),
)  # fmt: skip


def has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None and (
        subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0
    )


def command_of(bench: Benchmark, quick: bool, out: Path, allow_dirty: bool) -> list[str]:
    """Paths inside the repository relative to it (the command runs there), so a result
    names the command anyone can type."""
    if out.is_relative_to(ROOT):
        out = out.relative_to(ROOT)
    flags = [flag.format(out=out) for flag in (bench.quick if quick else bench.args)]
    flags += ["--allow-dirty"] if allow_dirty else []
    return [sys.executable, str((HERE / bench.script).relative_to(ROOT)), *flags]


def run(bench: Benchmark, quick: bool, out: Path, allow_dirty: bool) -> float:
    command = command_of(bench, quick, out, allow_dirty)
    print(f"== {bench.name}: {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="names, comma-separated (see --list)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, not the kept results")
    parser.add_argument("--out", help="results folder (default: benchmarks/results; --quick: a "
                        "temporary one)")  # fmt: skip
    parser.add_argument("--list", action="store_true", help="name each benchmark and its files")
    parser.add_argument("--allow-dirty", action="store_true", help="handed to each (tests only)")
    args = parser.parse_args(argv)
    chosen = [b for b in BENCHMARKS if args.only is None or b.name in args.only.split(",")]
    if args.only is not None and len(chosen) != len(set(args.only.split(","))):
        known = ", ".join(b.name for b in BENCHMARKS)
        raise SystemExit(f"run_all: --only names an unknown benchmark; known: {known}")
    if args.list:
        for bench in chosen:
            print(f"{bench.name:16} {bench.script:24} {', '.join(bench.results)}")
        return {}
    require_clean(args.allow_dirty)  # before hours of measuring, not after
    gpu = has_gpu()
    seconds: dict[str, float] = {}
    failed: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.out or (Path(scratch) / "results" if args.quick else HERE / "results"))
        out.mkdir(parents=True, exist_ok=True)
        for bench in chosen:
            if bench.needs_gpu and not gpu:
                print(f"== {bench.name}: skipped, needs a GPU (nvidia-smi finds none)")
                continue
            try:  # one failure does not cost the others' hours
                seconds[bench.name] = run(bench, args.quick, out.resolve(), args.allow_dirty)
            except subprocess.CalledProcessError as err:
                failed.append(f"{bench.name} (exit {err.returncode})")
    print("done:", ", ".join(f"{name} {s:.0f} s" for name, s in seconds.items()))
    if failed:
        raise SystemExit(f"run_all: failed: {', '.join(failed)}; its output is above")
    return seconds


if __name__ == "__main__":
    main()
