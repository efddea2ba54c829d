"""The figures README quotes from its own commands: the main job and `raysim fit`.

    python benchmarks/bench_readme.py [--quick] [--out benchmarks/results]

Runs, each as a fresh process timed from its start: README's main job (`raysim run
--config configs/distributed_config.yaml --num-epochs 3`) and README's `raysim fit`
command, and keeps what README says of them (accuracy, samples/s, time to the first
step and its stages, memory per node, the largest batch that fits, the wall times).
--quick: one epoch of 3 steps, and a fit searched at a coarse resolution.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import parse, provenance, timed_raysim
from formatting import Renderer, table

MAIN_JOB = ["run", "--config", "configs/distributed_config.yaml", "--num-epochs", "3"]
FIT = ["fit", "--config", "configs/distributed_config.yaml", "--memory-fraction", "0.04",
       "--resolution", "16"]  # fmt: skip
QUICK_MAIN_JOB = ["--num-epochs", "1", "--max-steps-per-epoch", "3"]
QUICK_FIT = ["--resolution", "128"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="benchmarks/results")
    args = parse(parser, argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        main_job = MAIN_JOB + (QUICK_MAIN_JOB if args.quick else [])
        wall = timed_raysim([*main_job, "--run-dir", scratch, "--run-name", "main"])
        summary = json.loads((Path(scratch) / "main" / "summary.json").read_text())
        fit_flags = FIT + (QUICK_FIT if args.quick else [])
        fit_out = Path(scratch) / "fit.json"
        fit_wall = timed_raysim([*fit_flags, "--run-dir", scratch, "--out", str(fit_out)])
        fit = json.loads(fit_out.read_text())
    main_result = {
        **provenance(args.allow_dirty),
        "raysim_command": "raysim " + " ".join(main_job),
        "figures": {
            "final_test_accuracy": summary["final_test_accuracy"],
            "samples_per_s": summary["samples_per_s"],
            "time_to_first_step_s": summary["time_to_first_step_s"],
            "startup_stages_s": {s["stage"]: s["seconds"] for s in summary["startup"]["stages"]},
            "wall_time_s": summary["wall_time_s"],
            "process_wall_s": wall,
            "memory_peak_mb_per_node": [n["memory_peak_bytes"] / 1e6 for n in summary["nodes"]],
            "peak_rss_mb_per_node": [n["peak_rss_bytes"] / 1e6 for n in summary["nodes"]],
            "memory_baseline_mb_per_node": [
                n["memory_baseline_bytes"] / 1e6 for n in summary["nodes"]
            ],
        },
        "summary": summary,
    }
    fit_result = {
        **provenance(args.allow_dirty),
        "raysim_command": "raysim " + " ".join(fit_flags),
        "process_wall_s": fit_wall,
        "result": fit,
    }
    (out / "readme_main_job.json").write_text(json.dumps(main_result, indent=2))
    (out / "fit_readme.json").write_text(json.dumps(fit_result, indent=2))
    print(json.dumps({**main_result["figures"], "fit_wall_s": fit_wall,
                      "largest_batch": fit["largest_batch"]}, indent=1))  # fmt: skip
    return {"main_job": main_result, "fit": fit_result}


# --- BENCHMARKS.md's tables from this bench's results -------------------------


def readme_main_job(data: dict) -> str:
    figures, summary = data["figures"], data["summary"]
    row = [
        f"{figures['wall_time_s']:.1f} s",
        f"{figures['time_to_first_step_s']:.1f} s",
        f"{summary['mean_epoch_time_s']:.1f} s",
        f"{figures['samples_per_s']:.1f}",
        f"{figures['final_test_accuracy']:.3f}",
        f"{summary['best_test_accuracy']:.3f}",
    ]
    header = [
        "wall",
        "time to first step",
        "mean epoch",
        "samples/s",
        "final test acc",
        "best test acc",
    ]
    return table(header, [row])


def fit(data: dict) -> str:
    result = data["result"]
    rows = [
        [str(t["batch_size"]), f"{t['peak_bytes'] / 1e6:.0f} MB", "yes" if t["fits"] else "no"]
        for t in result["trials"]
    ]
    trials = table(["batch per node", "memory peak", "fits"], rows)
    summary = (
        f"Largest batch that fits: {result['largest_batch']}, of a "
        f"{result['budget_bytes'] / 1e6:.0f} MB budget per node; "
        f"{len(result['trials'])} trials, {data['process_wall_s']:.0f} s (the whole command)."
    )
    return trials + "\n\n" + summary


TABLES: dict[str, tuple[str, Renderer]] = {
    "readme_main_job": ("readme_main_job.json", readme_main_job),
    "fit": ("fit_readme.json", fit),
}
"""BENCHMARKS.md block name: (result file, renderer); tables.py gathers them."""


if __name__ == "__main__":
    main()
