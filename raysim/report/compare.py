"""`raysim compare`: read run directories, compute the figures, write the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raysim.projection.cost import parse_price
from raysim.projection.target import Target
from raysim.report.figures import compare_runs
from raysim.report.projection import Pricing, project_runs
from raysim.report.render import write_report
from raysim.report.runs import load_run


def compare(
    run_dirs: list[str | Path],
    out: str | Path | None = None,
    target_accuracy: float | None = None,
    target: Target | None = None,
    step_time_ms: float | None = None,
    html: bool = False,
    usd_per_gpu_hour: str | None = None,
) -> dict[str, Any]:
    """Read run directories, compute the figures, and (with `out`) write report.md and plots;
    with `target`, each run projected onto that real cluster as well (labelled projected);
    with `html`, report.html beside report.md (one file, its plots inlined); with
    `usd_per_gpu_hour` (a price or a preset of raysim.projection.cost) and `target`, each
    projected row's time and cost per epoch and to the target accuracy its run reached."""
    runs = [load_run(d) for d in run_dirs]
    comparison = compare_runs(runs, target_accuracy)
    if target is not None:
        pricing = None
        if usd_per_gpu_hour is not None:
            price, source = parse_price(usd_per_gpu_hour)
            reached = {f["name"]: f.get("samples_to_target") for f in comparison["runs"]}
            pricing = Pricing(price, source, reached)
        comparison["projection"] = project_runs(runs, target, step_time_ms, pricing)
    if out is not None:
        write_report(comparison, runs, Path(out), html=html)
    return comparison
