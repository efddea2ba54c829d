"""BENCHMARKS.md's tables, rendered from the kept result files so no figure is typed by hand.

    python benchmarks/tables.py --write   # rewrite every marked block from the files
    python benchmarks/tables.py --check   # exit 1 naming each block that differs

A block sits between `<!-- table: NAME (from benchmarks/results/FILE.json) -->` and
`<!-- end table -->`; BLOCKS maps NAME to its file and renderer. Renderers read keys by
name only, so a file regenerated with provenance keys on top renders the same table,
plus a `Result:` line naming the commit, date and command the file records.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "BENCHMARKS.md"
RESULTS = ROOT / "benchmarks" / "results"
BLOCK = re.compile(
    r"(?P<head><!-- table: (?P<name>[\w-]+) \(from benchmarks/results/(?P<file>[\w.-]+)\) -->\n)"
    r"(?P<body>.*?)(?P<end><!-- end table -->)",
    re.DOTALL,
)
MINUS = "\u2212"


class Skip(Exception):
    """A file that cannot give its block yet (an older shape): the block stays as it is."""


# --- formatting --------------------------------------------------------------------


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def num(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def signed(value: float, digits: int) -> str:
    """With a typographic minus, as the prose writes negative figures."""
    text = f"{value:+.{digits}f}"
    return text.replace("-", MINUS)


def span(low: float, high: float, digits: int, unit: str = "") -> str:
    """`low–high`, or one figure where both round the same."""
    low_text, high_text = num(low, digits), num(high, digits)
    text = low_text if low_text == high_text else f"{low_text}–{high_text}"
    return text + unit


def median_span(median: float, low: float, high: float, digits: int) -> str:
    return f"{num(median, digits)} ({span(low, high, digits)})"


def paired(ratio: dict) -> str:
    """A paired ratio's median with its range (3 digits), as bench_*.py keep them."""
    return median_span(ratio["median"], ratio["min"], ratio["max"], 3)


def thousands(value: float) -> str:
    return f"{value:,.0f}"


def each(values: list[float], digits: int, unit: str = "") -> str:
    return " / ".join(num(v, digits) for v in values) + unit


def times_ten(value: float) -> str:
    """2 significant figures as `a.b × 10⁻ⁿ`."""
    mantissa, exponent = f"{value:.1e}".split("e")
    power = str(int(exponent)).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"{mantissa} × 10{power}"


def result_line(data: dict) -> str:
    """What the file says made it: `Result: commit X, DATE, `COMMAND`.`"""
    parts = []
    if data.get("commit"):
        parts.append(f"commit {data['commit']}")
    if data.get("date"):
        parts.append(data["date"])
    if data.get("command"):
        parts.append(f"`{data['command']}`")
    return f"Result: {', '.join(parts)}." if parts else ""


# --- renderers: one per table (files of one shape share one) -------------------------

CLI_CASES = {
    "import": "`import raysim` (`-X importtime` total)",
    "help": "`raysim --help`",
    "flag_error": "`raysim run --batch-size eight` (a flag error)",
    "config_error": "`raysim run --config no-such-config.yaml` (a config error)",
}


def seconds_span(figures: dict) -> str:
    spread = span(figures["min_s"], figures["max_s"], 3)
    return f"{figures['median_s']:.3f} s ({spread})"


def cli_start(data: dict) -> str:
    trees = list(data["results"])
    rows = [
        [label, *[seconds_span(data["results"][tree][case]) for tree in trees]]
        for case, label in CLI_CASES.items()
    ]
    return table(["case", *trees], rows)


def ratio_cell(ratio: dict) -> str:
    if ratio["min"] == ratio["max"] == ratio["median"]:
        return f"{ratio['median']:g}"
    return paired(ratio)


def ab_house(data: dict) -> str:
    trees = list(data["results"])
    rows = []
    for tree in trees:
        entry = data["results"][tree]
        rows.append(
            [
                tree,
                median_span(entry["steady_samples_per_s"], entry["min"], entry["max"], 1),
                ratio_cell(entry[f"ratio_to_{trees[0]}"]),
                f"{entry['memory_peak_mb']:.0f} MB",
            ]
        )
    header = [
        "tree",
        "steady samples/s, median (min–max)",
        f"paired ratio to {trees[0]}, median (min–max)",
        "training memory peak per node",
    ]
    return table(header, rows)


def measure(data: dict) -> str:
    settings, rate, ratio = data["settings"], data["samples_per_s"], data["ratio_on_to_off"]
    row = [
        f"{settings['steps']} steps × {settings['repeats']} pairs",
        num(rate["on"]["median"], 1),
        num(rate["off"]["median"], 1),
        paired(ratio),
    ]
    header = ["sitting", "samples/s on (median)", "off (median)", "ratio on/off, median (min–max)"]
    return table(header, [row])


MEASURE_HOOK_PHASES = {
    "cost": "the model at width 8: raysim's cost per step",
    "full": "the example's model (width 128)",
    "identical": "check: two identical copies, width 8",
}


def measure_hooks(data: dict) -> str:
    rows = []
    for name, label in MEASURE_HOOK_PHASES.items():
        phase = data["summary"].get(name)
        if phase is None:
            continue
        low, high = phase["added_ms_ci95"]
        rows.append([
            label,
            f"{phase['pairs_per_order']} × 2",
            f"{phase['plain_step_ms']:.2f} ms",
            f"{signed(phase['added_ms'], 3)} ms ({signed(low, 3)} to {signed(high, 3)})",
            f"{phase['paired_ratio']:.4f}",
        ])  # fmt: skip
    overhead = data["overhead"]
    low, high = overhead["ci95"]
    header = ["copies", "pairs × build orders", "plain step (median)",
              "added per step (95 % interval)", "paired ratio"]  # fmt: skip
    return (
        table(header, rows) + f"\n\nOverhead on the example's step (cost ÷ its plain step): "
        f"**{overhead['of_full_step']:.2%}** (95 % interval {low:.2%} to {high:.2%})."
    )


TRACE_RATES = {
    "steady_samples_per_s": "steady samples/s (measured steps)",
    "by_report_interval": "by report interval",
}


def trace(data: dict) -> str:
    rows = []
    for key, label in TRACE_RATES.items():
        rate, ratio = data[key]["samples_per_s"], data[key]["ratio_on_to_off"]
        rows.append(
            [
                label,
                num(rate["on"]["median"], 1),
                num(rate["off"]["median"], 1),
                paired(ratio),
            ]
        )
    header = ["rate", "samples/s on (median)", "off (median)", "ratio on/off, median (min–max)"]
    return table(header, rows)


def tracer_calls(data: dict) -> str:
    calls, settings = data["tracer_calls"], data["settings"]
    traced = f"{settings['trace_steps']} of {settings['steps']} steps traced"
    rows = [
        ["the tracer's calls, per traced step", f"{calls['traced_step_s'] * 1e6:.0f} µs"],
        [
            "the tracer's calls, per step past the traced ones",
            f"{calls['untraced_step_s'] * 1e6:.1f} µs",
        ],
        ["the measured step (tracing off, median)", f"{calls['median_step_s_off']:.2f} s"],
        [f"the tracer's share of that step ({traced})", times_ten(calls["share_of_step"])],
        [
            "the controller's rewrite of trace.json, per report",
            f"{calls['last_trace_rewrite_s'] * 1e3:.1f} ms",
        ],
        [
            "that rewrite's share of an epoch's training time",
            times_ten(calls["rewrite_share_of_epoch"]),
        ],
    ]
    return table(["timed alone (no Ray)", "cost"], rows)


CORE_SETUPS = {
    "raysim-1": "raysim, 1 node × 32",
    "raysim-2": "raysim, 2 nodes × 8",
    "ddp-2": "plain DDP, 2 × 8, raysim's DDP settings",
    "ddp-2-defaults": "plain DDP, 2 × 8, DDP's defaults",
    "raysim-4": "raysim, 4 nodes × 8",
    "ddp-4": "plain DDP, 4 × 8, raysim's DDP settings",
    "ddp-4-defaults": "plain DDP, 4 × 8, DDP's defaults",
    "serial-4": "serial same work, 4 × 8",
    "single-32": "one process, batch 32",
}
CORE_RATIOS = {  # ratio key: (label, target or None, note where there is none)
    "raysim-4 / ddp-4-defaults": ("raysim 4 / plain DDP 4, DDP's defaults", 0.95, ""),
    "raysim-4 / ddp-4": ("raysim 4 / plain DDP 4, raysim's DDP settings", 0.95, ""),
    "raysim-2 / ddp-2-defaults": ("raysim 2 / plain DDP 2, DDP's defaults", 0.95, ""),
    "raysim-2 / ddp-2": ("raysim 2 / plain DDP 2, raysim's DDP settings", 0.95, ""),
    "raysim-4 / serial-4": ("raysim 4 / same-work serial limit", 0.95, ""),
    "raysim-4 / single-32": (
        "raysim 4 / one process at batch 32",
        None,
        " (4× the optimizer steps and all-reduces)",
    ),
    "raysim-1 / single-32": ("raysim 1 / one process at batch 32", None, ""),
}
CORE_BESIDE = {"raysim-4 / serial-4": ("plain DDP", "ddp-4 / serial-4")}


def per_repeat(entry: dict, key: str, digits: int, unit: str) -> str:
    values = [r[key] for r in entry["repeats"] if r.get(key) is not None]
    return each(values, digits, unit) if values else "–"


def memory_cells(entry: dict) -> list[str]:
    """Peak per worker and in total; "same" where one process is the whole setup."""
    peaks = [r["peak_rss_mb"] for r in entry["repeats"]]
    totals = [r["total_rss_mb"] for r in entry["repeats"]]
    total = "same" if totals == peaks else span(min(totals), max(totals), 0, " MB")
    return [span(min(peaks), max(peaks), 0, " MB"), total]


def report_blocked(entry: dict) -> str:
    blocked = [r["report_s_median"] for r in entry["repeats"] if "report_s_median" in r]
    return span(min(blocked), max(blocked), 3, " s") if blocked else "–"


def core_setups(data: dict) -> str:
    rows = []
    for key, label in CORE_SETUPS.items():
        entry = data[key]
        rows.append(
            [
                label,
                median_span(entry["steady_samples_per_s"], entry["min"], entry["max"], 0),
                per_repeat(entry, "time_to_first_step_s", 1, " s"),
                per_repeat(entry, "process_wall_s", 1, " s"),
                *memory_cells(entry),
                report_blocked(entry),
            ]
        )
    loader = thousands(round(data["data"]["steady_samples_per_s"], -3))
    rows.append(["data loader alone (digits), one node", loader, *["–"] * 5])
    header = [
        "setup",
        "steady samples/s (min–max)",
        "time to first step",
        "process wall",
        "peak RSS per worker",
        "total RSS",
        "report blocked",
    ]
    return table(header, rows)


def verdict(ratio: dict, target: float) -> str:
    """Met only if every paired ratio is; at the median if half are."""
    if ratio["min"] >= target:
        return f"≥ {target}: met"
    if ratio["median"] >= target:
        return f"≥ {target}: met at the median"
    return f"≥ {target}: **not met**"


def core_ratios(data: dict) -> str:
    rows = []
    for key, (label, target, note) in CORE_RATIOS.items():
        ratio = data["ratios"][key]
        median = num(ratio["median"], 2)
        goal = "–" + note
        if target is not None:
            median, goal = f"**{median}**", verdict(ratio, target)
        if key in CORE_BESIDE:
            name, other = CORE_BESIDE[key]
            goal += f" ({name}: {data['ratios'][other]['median']:.2f})"
        rows.append([label, median, span(ratio["min"], ratio["max"], 2), goal])
    return table(["ratio", "median", "min–max", "target"], rows)


def core_limit(data: dict) -> str:
    """raysim at 4 nodes against one process doing their work, at one image size."""
    setups = (("raysim-4", "raysim, 4 nodes × batch 8"),
              ("raysim-4-gloo", "raysim, the same over gloo (`--no-shared-memory-allreduce`)"),
              ("serial-4", "one process, the same work (the limit)"))  # fmt: skip
    rows = [
        [label, median_span(data[key]["steady_samples_per_s"], data[key]["min"],
                            data[key]["max"], 0)]
        for key, label in setups if key in data
    ]  # fmt: skip
    ratio = data["ratios"]["raysim-4 / serial-4"]
    rows.append(["raysim / the limit, paired", f"**{num(ratio['median'], 2)}** "
                 f"({span(ratio['min'], ratio['max'], 2)}): {verdict(ratio, 0.95)}"])  # fmt: skip
    for pair, label in (("raysim-4-gloo / serial-4", "raysim over gloo / the limit, paired"),
                        ("raysim-4 / raysim-4-gloo", "shared memory / gloo, paired")):  # fmt: skip
        if pair in data["ratios"]:
            ratio = data["ratios"][pair]
            figure = f"{num(ratio['median'], 2)} ({span(ratio['min'], ratio['max'], 2)})"
            rows.append([label, figure])
    size = data["settings"]["image_size"]
    return table([f"{size} px, {len(data['raysim-4']['repeats'])} repeats", "steady samples/s, "
                  "median (min–max)"], rows)  # fmt: skip


IMPORT_LABELS = {
    "torch": "torch (every Ray Train worker)",
    "ray.train.torch": "Ray Train's torch support (every Ray Train worker)",
    "raysim.worker.entry": "raysim's worker side",
    "raysim.worker.launchers": "raysim's worker side",
    "raysim.builtin.loop": "the built-in loop",
    "torchvision": "torchvision (ResNet18)",
    "torch._dynamo": "of which torch._dynamo (DDP's constructor imports it too)",
}


def median_rows(labels: dict[str, str], medians: dict, repeats: list[dict], unit: str) -> list:
    """A row per key of labels: its label, its median and its min–max over the repeats."""
    return [
        [label, f"{medians[key]:.2f}{unit}",
         span(min(r[key] for r in repeats), max(r[key] for r in repeats), 2, unit)]
        for key, label in labels.items()
        if key in medians  # raysim.worker.entry became raysim.worker.launchers
    ]  # fmt: skip


def imports(data: dict) -> str:
    repeats = data["repeats"]
    rows = median_rows(IMPORT_LABELS, data["median_cumulative_s"], repeats, " s")
    header = [f"import, in a node's order ({len(repeats)} fresh interpreters)",
              "adds (median)", "min–max"]  # fmt: skip
    return table(header, rows)


def node_work(data: dict) -> str:
    medians, repeats = data["median_cpu_s"], data["repeats"]
    rows = median_rows({piece: piece for piece in medians}, medians, repeats, " CPU-s")
    nodes, cores = data["settings"]["nodes"], data["cores"]
    rows.append(["a node, in all", f"{data['median_total_cpu_s']:.2f} CPU-s", ""])
    rows.append([f"{nodes} nodes on {cores} cores, at the least",
                 f"{data['wall_floor_s']:.2f} s of wall time", ""])  # fmt: skip
    header = [f"from the first line to the first step's end ({len(repeats)} fresh interpreters)",
              "median", "min–max"]  # fmt: skip
    return table(header, rows)


def ab_buckets(data: dict) -> str:
    """bench_ab.py pairs the trees' runs by repeat; this older file lacks the ratios."""
    before, after = (data["results"][tree]["runs"] for tree in ("before", "after"))
    ratios = [a["steady"] / b["steady"] for a, b in zip(after, before, strict=True)]
    settings = data["settings"]
    row = [
        f"`bench_ab.py` ({len(ratios)} repeats)",
        each([r["steady"] for r in before], 1),
        each([r["steady"] for r in after], 1),
        ", ".join(num(r, 2) for r in ratios),
    ]
    header = [
        f"A/B ({settings['nodes']} nodes, {settings['epochs']} epochs)",
        "DDP's defaults",
        "one bucket + views",
        "paired ratios",
    ]
    return table(header, [row])


DATA_ROWS = {
    "imagefolder-decode": "imagefolder, decode every access",
    "imagefolder-cached": "imagefolder, decoded cache",
    "data": "digits from memory (`data`, same session)",
}


def core_data(data: dict) -> str:
    rows = []
    for key, label in DATA_ROWS.items():
        entry = data[key]
        cells = [thousands(entry[k]) for k in ("steady_samples_per_s", "min", "max")]
        rows.append([label, f"{cells[0]} ({cells[1]}–{cells[2]})"])
    px = data["settings"]["image_size"]
    return table([f"loader, one node, {px} px", "steady samples/s (min–max)"], rows)


def cache_costs(data: dict) -> str:
    repeats = data["imagefolder-cached"]["repeats"]
    ratio = data["ratios"]["imagefolder-cached / imagefolder-decode"]
    if isinstance(ratio, dict):  # paired over repeats: the median
        ratio = ratio["median"]
    row = [
        each([r["build_s"] for r in repeats], 2, " s"),
        " / ".join(str(r["images_decoded"]) for r in repeats),
        each([r["load_s"] * 1e3 for r in repeats], 0, " ms"),
        f"{ratio:.0f}×",
    ]
    header = [
        "cache build, each repeat",
        "images decoded",
        "reopening (memory-mapped)",
        "cached ÷ decode every access",
    ]
    return table(header, [row])


def topology(data: dict) -> str:
    rows = []
    for name in ("single_host", "multi_node"):
        entry = data[name]
        runs = entry["repeats"]
        rates = ", ".join(num(r["steady_samples_per_s"], 1) for r in runs)
        firsts = ", ".join(num(r["time_to_first_step_s"], 1) for r in runs)
        accuracy = statistics.median(r["final_test_accuracy"] for r in runs)
        rows.append(
            [
                name,
                f"{entry['steady_samples_per_s']:.1f} ({rates})",
                f"{entry['time_to_first_step_s']:.1f} s ({firsts})",
                f"{entry['process_wall_s']:.1f} s",
                f"{accuracy:.3f}",
            ]
        )
    header = [
        "topology",
        "steady samples/s (each run)",
        "time to first step",
        "process wall",
        "final test acc",
    ]
    return table(header, rows)


def topology_ratios(data: dict) -> str:
    ratios = data["ratios"]
    rows = [
        [
            "samples/s, multi_node ÷ single_host",
            f"{ratios['multi_node / single_host samples/s']:.2f}×",
        ],
        [
            "time to first step, multi_node − single_host",
            f"{signed(ratios['multi_node − single_host time to first step (s)'], 1)} s",
        ],
    ]
    return table(["medians compared", ""], rows)


def node_loss(data: dict) -> str:
    loss = data["node_loss"]
    row = [
        f"{loss['detect_s']:.1f} s",
        f"{loss['recover_s']:.1f} s",
        f"{loss['recomputed_epoch_time_s']:.1f} s",
        ", ".join(str(size) for size in loss["world_sizes"]),
        f"{loss['final_test_accuracy']:.3f}",
        f"{loss['process_wall_s']:.0f} s",
    ]
    header = [
        "losing a node: detected (detect_s)",
        "first report after (recover_s)",
        "recomputed epoch",
        "world size per epoch",
        "final test acc",
        "whole command",
    ]
    return table(header, [row])


NETWORK_STEPS = ("loopback_step_s", "predicted_step_s", "predicted_no_overlap_s", "measured_step_s")


def network(data: dict) -> str:
    rows = []
    for row in data["rows"]:
        seconds = [row[k] for k in NETWORK_STEPS]
        rows.append(
            [
                row["network"].replace("gbe", " GbE"),
                str(row["nodes"]),
                *[f"{s:.3f} s" for s in seconds],
                f"{signed(row['error'] * 100, 1)} %",
            ]
        )
    header = [
        "network",
        "nodes",
        "loopback step",
        "predicted",
        "predicted, no overlap",
        "measured",
        "error",
    ]
    return table(header, rows)


VARIANTS = (
    "baseline",
    "amp bf16",
    "amp fp16",
    "channels_last",
    "accumulate 4 x 16",
    "activation checkpointing",
)
VARIANT_LABELS = {"amp fp16": "amp fp16 (grad scaler)"}


def variant_order(row: dict) -> int:
    return VARIANTS.index(row["variant"]) if row["variant"] in VARIANTS else len(VARIANTS)


def switches(data: dict) -> str:
    rows = []
    for row in sorted(data["rows"], key=variant_order):
        label = VARIANT_LABELS.get(row["variant"], row["variant"]).replace(" x ", " × ")
        rows.append(
            [
                label,
                f"{row['peak_bytes'] / 1e6:.0f} MB",
                num(row["peak_vs_baseline"], 2),
                f"{row['samples_per_s']:.0f}",
                num(row["samples_per_s_vs_baseline"], 2),
            ]
        )
    peak = "peak allocated" if data["device"] == "cuda" else "peak RSS"
    return table(["variant", peak, "vs baseline", "samples/s", "vs baseline"], rows)


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


STARTUP_ROWS = (  # label, where in one part's figures, the format (differences signed)
    ("Ray Train floor: function's first line", ("median_s", "ray-train", "first_line_s"), num),
    ("Ray Train floor: first DDP step", ("median_s", "ray-train-ddp", "first_step_start_s"), num),
    ("raysim: first training step", ("median_s", "raysim", "first_step_s"), num),
    ("raysim − first-line floor", ("raysim_first_step_minus_first_line_floor_s",), signed),
    ("raysim − DDP-step floor", ("raysim_first_step_minus_ddp_step_floor_s",), signed),
)
STARTUP_PARTS = ("cold", "warm")


def dig(data: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


def startup_parts(data: dict) -> list[str]:
    """The parts the file holds; the file of before the cold/warm split gives no block."""
    if "cold" not in data:
        raise Skip("no 'cold' part: the file has the old shape")
    return [p for p in STARTUP_PARTS if p in data]


def startup(data: dict) -> str:
    parts = startup_parts(data)
    rows = []
    for label, path, form in STARTUP_ROWS:
        rows.append([label, *[f"{form(dig(data[p], path), 2)} s" for p in parts]])
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


def projection(data: dict) -> str:
    rows = []
    for p in data["points"]:
        rows.append(
            [
                p["point"],
                f"{p['machines']} × {p['gpus'] // p['machines']}",
                p["setting"],
                f"{p['published_efficiency'] * 100:.1f}%",
                f"{p['projected_efficiency'] * 100:.1f}%",
                f"{p['error_points']:+.1f}",
                f"{p['published_step_ms']:.1f}",
                f"{p['projected_step_ms']:.1f}",
                p["role"],
            ]
        )
    header = [
        "point",
        "machines × GPUs",
        "setting",
        "published eff.",
        "projected eff.",
        "error (points)",
        "published step ms",
        "projected step ms",
        "role",
    ]
    sources = ", ".join(sorted({p["source"] for p in data["points"]}))
    held_out = (
        f"Held out: mean absolute error {data['held_out_mean_abs_error_points']} points, "
        f"largest {data['held_out_max_abs_error_points']}."
    )
    return table(header, rows) + f"\n\nSources: {sources}.\n\n" + held_out


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


def ab_first_step(before_label: str, after_label: str) -> Callable[[dict], str]:
    """The time to the first step before and after a change, paired by repeat."""

    def render(data: dict) -> str:
        before, after = (data["results"][tree] for tree in ("before", "after"))
        paired = after["first_step_minus_before_s"]
        row = [
            f"`raysim run`, {data['settings']['nodes']} nodes ({len(before['runs'])} repeats)",
            each([r["first_step_s"] for r in before["runs"]], 1, " s"),
            each([r["first_step_s"] for r in after["runs"]], 1, " s"),
            f"{signed(paired['median'], 2)} s ({signed(paired['min'], 1)} to "
            f"{signed(paired['max'], 1)})",
        ]
        header = ["time to the first step", before_label, after_label, "paired, median (range)"]
        return table(header, [row])

    return render


Renderer = Callable[[dict], str]
BLOCKS: dict[str, tuple[str, Renderer]] = {
    "cli_start": ("bench_cli_start.json", cli_start),
    "ab_house": ("bench_ab_house.json", ab_house),
    "measure": ("bench_measure.json", measure),
    "measure_20steps": ("bench_measure_20steps.json", measure),
    "measure_hooks": ("bench_measure_hooks.json", measure_hooks),
    "trace": ("bench_trace.json", trace),
    "trace_tracer_calls": ("bench_trace.json", tracer_calls),
    "core": ("bench_core.json", core_setups),
    "core_ratios": ("bench_core.json", core_ratios),
    "core_limit_32": ("bench_core_limit_32px.json", core_limit),
    "core_limit_16": ("bench_core_limit_16px.json", core_limit),
    "ab_buckets": ("bench_ab_buckets.json", ab_buckets),
    "ab_helpers": ("bench_ab_helpers.json", ab_first_step("with the helpers", "without")),
    "ab_preload": (
        "bench_ab_preload.json",
        ab_first_step("imports, then Ray's start", "imports during Ray's start"),
    ),
    "ab_coordinator": (
        "bench_ab_coordinator.json",
        ab_first_step("coordinator started by the controller", "by the driver, before fit()"),
    ),
    "ab_imports_ahead": (
        "bench_ab_imports_ahead.json",
        ab_first_step("imports after the first line", "begun at the worker's creation"),
    ),
    "node_work": ("bench_node_work.json", node_work),
    "readme_main_job": ("readme_main_job.json", readme_main_job),
    "core_data": ("bench_core_data.json", core_data),
    "core_data_cache": ("bench_core_data.json", cache_costs),
    "topology": ("bench_topology.json", topology),
    "topology_ratios": ("bench_topology.json", topology_ratios),
    "topology_node_loss": ("bench_topology.json", node_loss),
    "network": ("bench_network.json", network),
    "fit": ("fit_readme.json", fit),
    "switches_cuda": ("bench_switches_cuda.json", switches),
    "switches_cpu": ("bench_switches_cpu.json", switches),
    "startup": ("bench_startup.json", startup),
    "imports": ("bench_imports.json", imports),
    "startup_stages": ("bench_startup.json", startup_stages),
    "startup_sweep": ("bench_startup.json", startup_sweep),
    "projection": ("projection_validation.json", projection),
}


# --- the blocks in BENCHMARKS.md -----------------------------------------------------


def render(name: str, results: Path = RESULTS) -> str:
    """A block's body: the renderer's tables, then the file's own account of its making."""
    file, renderer = BLOCKS[name]
    data = json.loads((results / file).read_text())
    body = renderer(data)
    line = result_line(data)
    return f"\n{body}\n\n{line}\n\n" if line else f"\n{body}\n\n"


def blocks(text: str) -> list[re.Match]:
    return list(BLOCK.finditer(text))


def check(text: str, results: Path = RESULTS) -> tuple[list[str], list[str]]:
    """(problems, skipped): each block that differs from its file, or is missing or unknown."""
    problems, skipped, seen = [], [], set()
    for block in blocks(text):
        name, file = block["name"], block["file"]
        seen.add(name)
        if name not in BLOCKS or BLOCKS[name][0] != file:
            problems.append(f"{name}: no renderer for {file} under that name")
            continue
        try:
            if block["body"] != render(name, results):
                problems.append(f"{name}: differs from {file}")
        except Skip as why:
            skipped.append(f"{name}: skipped, {why}")
    problems += [f"{name}: no block in BENCHMARKS.md" for name in BLOCKS if name not in seen]
    return problems, skipped


def write(text: str, results: Path = RESULTS) -> str:
    """The text with every known block rendered afresh (a block that cannot be, as it was)."""

    def fill(block: re.Match) -> str:
        if BLOCKS.get(block["name"], ("",))[0] != block["file"]:
            return block[0]
        try:
            return block["head"] + render(block["name"], results) + block["end"]
        except Skip:
            return block[0]

    return BLOCK.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the blocks from the files")
    mode.add_argument("--check", action="store_true", help="exit 1 if a block differs")
    args = parser.parse_args(argv)
    text = DOC.read_text()
    if args.write:
        DOC.write_text(write(text))
        return 0
    problems, skipped = check(text)
    for line in skipped + problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
