"""Render a comparison as report.md (and report.html), PNG plots and comparison.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raysim.report.document import Block, Bullets, Heading, Images, Table, Text, markdown
from raysim.report.projection import format_duration
from raysim.report.runs import RunRecord
from raysim.report.timeline import write_timelines
from raysim.units import GB, MB

COMPARISON_FILE = "comparison.json"
REPORT_FILE, HTML_FILE = "report.md", "report.html"
TIMELINES = (
    "A few traced steps of each run's last epoch on every node (from its trace.json, which "
    "Perfetto and chrome://tracing open with every traced step): compute phases above, each "
    "bucket's all-reduce and the emulated delay below."
)


def _fmt(value: Any, spec: str = ".2f", scale: float = 1.0, unit: str = "") -> str:
    if value is None:
        return "–"
    return f"{value if scale == 1.0 else value / scale:{spec}}{unit}"


def _section(title: str, definition: str, header: list[str], rows: list[list[str]]) -> list[Block]:
    return [Heading(title), Text(definition), Table(header, rows)]


Column = tuple[str, Callable[[dict], str]]


def nodes_cell(run: dict) -> str:
    """Nodes at the start, and at the end when an elastic run lost some: '3→2'."""
    final = run.get("final_world_size", run["nodes"])
    return str(run["nodes"]) if final == run["nodes"] else f"{run['nodes']}→{final}"


def _rows(runs: list[dict], columns: list[Column], needs: str) -> tuple[list[str], list[list[str]]]:
    """One row per run that has the section's figures (`needs`: one of its keys)."""
    shown = [r for r in runs if needs in r]
    header = ["run", "nodes"] + [name for name, _ in columns]
    rows = [[r["name"], nodes_cell(r)] + [cell(r) for _, cell in columns] for r in shown]
    return header, rows


SECTIONS: list[tuple[str, str, list[Column]]] = [
    (
        "Time per epoch",
        "Mean wall time of the training part of an epoch (the slowest node sets it); "
        "the first epoch includes warm-up, so the mean after it is shown too.",
        [
            ("mean epoch", lambda r: _fmt(r["mean_epoch_time_s"], unit=" s")),
            ("after first", lambda r: _fmt(r["epoch_time_after_first_s"], unit=" s")),
        ],
    ),
    (
        "Throughput and scaling",
        "Aggregate samples/s over the epochs after the first. Speed-up is against the "
        "1-node run with the same per-node batch (equal per-node batch) or with the "
        "same global batch; scaling efficiency is speed-up / nodes.",
        [
            ("samples/s", lambda r: _fmt(r["samples_per_s"], ".1f")),
            ("per node", lambda r: _fmt(r["samples_per_s_per_node"], ".1f")),
            ("speed-up (node batch)", lambda r: _fmt(r["equal_node_batch_speedup"], unit="×")),
            ("efficiency (node batch)", lambda r: _fmt(r["equal_node_batch_efficiency"])),
            ("speed-up (global batch)", lambda r: _fmt(r["equal_global_batch_speedup"], unit="×")),
            ("efficiency (global batch)", lambda r: _fmt(r["equal_global_batch_efficiency"])),
        ],
    ),
    (
        "Memory",
        "Training memory of the busiest node (what its budget is charged: PyTorch's CUDA "
        "allocator on a GPU, data-segment growth over the baseline on the simulated CPU "
        "device) against its budget (memory_fraction × device memory), the nodes' peaks "
        "summed against the device, and the busiest node's whole-process peak RSS.",
        [
            ("peak per node", lambda r: _fmt(r["peak_per_node_bytes"], ".0f", MB, " MB")),
            ("budget per node", lambda r: _fmt(r["budget_per_node_bytes"], ".0f", MB, " MB")),
            ("total peak", lambda r: _fmt(r["peak_total_bytes"], ".0f", MB, " MB")),
            ("peak RSS per node", lambda r: _fmt(r["peak_rss_per_node_bytes"], ".0f", MB, " MB")),
            ("device", lambda r: _fmt(r["device_memory_bytes"], ".0f", MB, " MB")),
        ],
    ),
    (
        "Convergence",
        "Epochs, seconds since the run started, and training samples seen until the test "
        "accuracy first reached the target.",
        [
            ("epochs to target", lambda r: _fmt(r["epochs_to_target"], "d")),
            ("seconds to target", lambda r: _fmt(r["seconds_to_target"], ".1f", unit=" s")),
            ("samples to target", lambda r: _fmt(r["samples_to_target"], "d")),
            ("final train loss", lambda r: _fmt(r["final_train_loss"], ".4f")),
        ],
    ),
    (
        "Accuracy",
        "Test accuracy after the last epoch and the best over all epochs.",
        [
            ("final test accuracy", lambda r: _fmt(r["final_test_accuracy"], ".4f")),
            ("best test accuracy", lambda r: _fmt(r["best_test_accuracy"], ".4f")),
        ],
    ),
    (
        "Resource efficiency",
        "Samples/s per unit of device asked for (nodes × gpu_fraction), per host core, and "
        "per GB of memory budget (nodes × budget).",
        [
            ("per device share", lambda r: _fmt(r["samples_per_s_per_device_share"], ".1f")),
            ("per core", lambda r: _fmt(r["samples_per_s_per_core"], ".1f")),
            ("per GB budget", lambda r: _fmt(r["samples_per_s_per_budget_gb"], ".1f")),
        ],
    ),
]


SECTION_NEEDS = {
    "Time per epoch": "mean_epoch_time_s",
    "Throughput and scaling": "samples_per_s",
    "Memory": "peak_per_node_bytes",
    "Convergence": "final_train_loss",
    "Accuracy": "final_test_accuracy",
    "Resource efficiency": "samples_per_s",
}
"""A user's function has raysim's measured sections; the built-in experiment all of them."""


def honest_reading(comparison: dict[str, Any]) -> list[Block]:
    """What the numbers can and cannot say: the nodes share one machine."""
    env = comparison["environment"]
    device = env.get("gpu_name") or (
        "a simulated device on the CPU" if env.get("simulated_device") else "one GPU"
    )
    shared = Text(
        f"All simulated nodes of a run shared one machine ({env.get('cpus', '?')} CPU cores, "
        f"{device}). Their aggregate throughput is what this machine delivers when it runs "
        "N data-parallel processes, not what N real machines would deliver."
    )
    lines = []
    for run in comparison["runs"]:
        if "samples_per_s" not in run or run["nodes"] == 1:
            continue
        if run["equal_global_batch_baseline"] is None:
            lines.append(
                f"{run['name']}: no 1-node run at global batch {run['global_batch']} in this "
                "comparison, so there is no like-for-like single-process figure."
            )
            continue
        speedup = run["equal_global_batch_speedup"]
        verdict = "faster" if speedup > 1 else "slower"
        lines.append(
            f"{run['name']}: {run['samples_per_s']:.1f} samples/s on {run['nodes']} simulated "
            f"nodes vs one process at the same global batch ({run['equal_global_batch_baseline']})"
            f": {speedup:.2f}×, i.e. {verdict}. Multi-node is more efficient here only if this "
            "is above 1."
        )
    return [shared, Bullets(lines)] if lines else [shared]


def runs_table(comparison: dict[str, Any]) -> Table:
    """Every run with its status, shape and (for a failed one) the error's first line."""
    return Table(
        ["run", "status", "nodes", "batch/node", "global batch", "error"],
        [
            [
                r["name"],
                r["status"],
                nodes_cell(r),
                str(r["batch_per_node"]),
                str(r["global_batch"]),
                r.get("error", "").splitlines()[0][:120] if r.get("error") else "",
            ]
            for r in comparison["runs"]
        ],
    )


def per_node_section(runs: list[RunRecord]) -> list[Block]:
    """Each simulated node of each measured run, from its summary.json: the straggler and
    the node closest to its memory budget show here, not in the run's aggregate."""
    rows = [
        [
            run.name,
            node.get("node_id", f"node-{node.get('rank')}"),
            _fmt(node.get("samples_per_s"), ".1f"),
            _fmt(node.get("step_time_s"), ".0f", 1e-3, " ms"),
            _fmt(node.get("memory_peak_bytes"), ".0f", MB, " MB"),
            _fmt(node.get("memory_budget_bytes"), ".0f", MB, " MB"),
            _fmt(node.get("peak_rss_bytes"), ".0f", MB, " MB"),
        ]
        for run in runs
        if run.measured
        for node in run.summary.get("nodes", [])
    ]
    if not rows:
        return []
    return _section(
        "Per node",
        "Each simulated node over the whole run: its samples/s and mean step time, its "
        "training memory peak against its budget, and its whole-process peak RSS.",
        ["run", "node", "samples/s", "step time", "memory peak", "budget", "peak RSS"],
        rows,
    )


def report_blocks(comparison: dict[str, Any], runs: list[RunRecord], out: Path) -> list[Block]:
    """What the report says, as blocks; its plots and timelines are written into `out`."""
    blocks: list[Block] = [Heading("raysim comparison", 1), *honest_reading(comparison)]
    blocks += [Text(f"Target accuracy: {comparison['target_accuracy']:.4f}.")]
    blocks += [Heading("Runs"), runs_table(comparison)]
    for title, definition, columns in SECTIONS:
        header, rows = _rows(comparison["runs"], columns, SECTION_NEEDS[title])
        if rows:
            blocks += _section(title, definition, header, rows)
    blocks += per_node_section(runs)
    projection = comparison.get("projection")
    if projection:
        blocks += projection_section(projection)
    plots = write_plots(comparison, [r for r in runs if r.builtin], out)
    if projection and projection["curve"]:
        plots.append(plot_projection(projection, out))
    blocks += [Heading("Plots"), Images(plots)]
    timelines = write_timelines([r.run_dir for r in runs], out)
    if timelines:
        blocks += [Heading("Timelines"), Text(TIMELINES), Images(timelines)]
    return blocks


def write_report(
    comparison: dict[str, Any], runs: list[RunRecord], out: Path, html: bool = False
) -> None:
    """report.md, its plots and comparison.json in `out`; with `html`, report.html too."""
    out.mkdir(parents=True, exist_ok=True)
    blocks = report_blocks(comparison, runs, out)
    (out / REPORT_FILE).write_text(markdown(blocks))
    if html:
        from raysim.report.html_page import html_page

        (out / HTML_FILE).write_text(html_page(blocks, out))
    (out / COMPARISON_FILE).write_text(json.dumps(comparison, indent=2))


def projection_section(projection: dict[str, Any]) -> list[Block]:
    rows = [
        [r["name"], str(r["machines"]), str(r["gpus"]), f"{r['samples_per_s']:.1f}",
         f"{r['speedup']:.2f}×", f"{r['efficiency']:.1%}", r["step_source"]]
        for r in projection["rows"]
    ]  # fmt: skip
    blocks = _section(
        f"Projected on a real cluster (not measured): {projection['target']}",
        "Each run's own model facts (buckets, when each was ready, backward's share) on as "
        "many machines as it had simulated nodes, by raysim's cluster model (README: 'How far "
        "to trust the projection'). Speed-up is against one GPU alone; efficiency is "
        "samples/s over GPUs × one GPU's.",
        ["run", "machines", "GPUs", "projected samples/s", "speed-up", "efficiency",
         "one GPU's step"],
        rows,
    )  # fmt: skip
    if "price" in projection:
        blocks += cost_section(projection)
    skipped = [f"not projected: {line}" for line in projection["skipped"]]
    return blocks + [Bullets(skipped)] if skipped else blocks


def _usd(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def cost_section(projection: dict[str, Any]) -> list[Block]:
    """Each projected row's time and cost per epoch and to the accuracy its run reached."""
    rows = [
        [r["name"], str(r["gpus"]), format_duration(r["epoch_s"]), _usd(r["epoch_usd"]),
         format_duration(r["to_target_s"]), _usd(r["to_target_usd"])]
        for r in projection["rows"] if "epoch_s" in r
    ]  # fmt: skip
    return _section(
        f"Projected cost (not measured): ${projection['usd_per_gpu_hour']:g} per GPU-hour",
        f"Price: {projection['price']}. GPU-hours × the price, at the projected samples/s: "
        "an epoch is the run's own; to target is the samples the run took to reach the "
        "target accuracy on the shared host, assumed to carry over (same global batch); "
        "'-' where the run did not reach it.",
        ["run", "GPUs", "epoch", "USD/epoch", "to target", "USD to target"],
        rows,
    )


def plot_projection(projection: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    curve = projection["curve"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    machines = [c["machines"] for c in curve]
    ax.plot(machines, [c["samples_per_s"] for c in curve], "o-", label="projected")
    ax.plot(machines, [c["ideal_samples_per_s"] for c in curve], "--", label="ideal linear")
    ax.set(title=f"Projected, not measured\n{projection['target']}", xlabel="machines",
           ylabel="samples/s")  # fmt: skip
    ax.title.set_fontsize(10)
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    fig.tight_layout()
    path = out / "projected_throughput_vs_machines.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_plots(comparison: dict[str, Any], runs: list[RunRecord], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    paths = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in runs:
        ax.plot([e["epoch"] for e in run.epochs], [e["train_loss"] for e in run.epochs], "o-",
                label=f"{run.name} ({run.nodes} nodes)")  # fmt: skip
    ax.set(title="Training loss per epoch", xlabel="epoch", ylabel="cross-entropy loss")
    ax.legend()
    save(fig, "loss_vs_epoch")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in runs:
        ax.plot([e["wall_time_s"] for e in run.epochs], [e["test_accuracy"] for e in run.epochs],
                "o-", label=f"{run.name} ({run.nodes} nodes)")  # fmt: skip
    ax.axhline(comparison["target_accuracy"], color="grey", linestyle=":", label="target")
    ax.set(title="Test accuracy against wall time", xlabel="seconds since start",
           ylabel="test accuracy")  # fmt: skip
    ax.legend()
    save(fig, "accuracy_vs_wall_time")

    finished = [r for r in comparison["runs"] if "samples_per_s" in r]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot([r["nodes"] for r in finished], [r["samples_per_s"] for r in finished], "o",
            label="measured")  # fmt: skip
    base = [r for r in finished if r["nodes"] == 1]
    if base:
        top = max(r["nodes"] for r in finished)
        ax.plot([1, top], [base[0]["samples_per_s"], top * base[0]["samples_per_s"]], "--",
                label=f"ideal linear (from {base[0]['name']})")  # fmt: skip
    ax.set(title="Aggregate throughput against simulated nodes", xlabel="nodes",
           ylabel="samples/s")  # fmt: skip
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # node counts are whole
    ax.legend()
    save(fig, "throughput_vs_nodes")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    positions = range(len(finished))
    ax.bar([p - 0.2 for p in positions], [r["peak_per_node_bytes"] / GB for r in finished],
           width=0.4, label="peak per node")  # fmt: skip
    ax.bar([p + 0.2 for p in positions], [r["budget_per_node_bytes"] / GB for r in finished],
           width=0.4, label="budget per node")  # fmt: skip
    ax.set_xticks(list(positions), [f"{r['name']} ({r['nodes']} nodes)" for r in finished])
    ax.set(title="Memory per node against its budget", ylabel="GB")
    ax.legend(loc="lower right")
    save(fig, "memory_per_node")
    return paths
