"""The `raysim` command. Every config key is also a flag (--num-nodes for num_nodes).

Precedence: defaults < --config YAML < flags. Errors a user can fix print one
clear message and exit 2; a failed training run exits 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import yaml

from raysim.cluster import dashboard_banner, hardware_for
from raysim.cluster.standing import down, up
from raysim.config import (
    ConfigError,
    ExperimentConfig,
    dump_yaml,
    field_types,
    load_config,
    parse_inject,
    read_yaml,
    resume_config,
)
from raysim.config import replace as replace_config
from raysim.config.script import REPORT_EVERY_STEPS, ScriptError, ScriptSpec, script_spec
from raysim.config.user_code import load_callable
from raysim.failures import RunFailedError
from raysim.plan import make_plan
from raysim.projection.collectives import ALGORITHMS, Topology
from raysim.projection.cost import IMAGENET_TRAIN_SAMPLES, PRICES, cost_of, parse_price
from raysim.projection.fsdp_step import project_fsdp_scaling
from raysim.projection.links import INTRA_LINKS, NETWORK_LINKS, parse_link
from raysim.projection.step_model import project_scaling
from raysim.projection.target import parse_target
from raysim.report import compare
from raysim.report.figures import time_to_target
from raysim.report.projection import (
    cluster_rows_json,
    describe_fsdp_inputs,
    describe_inputs,
    format_cluster_table,
    format_cost_table,
    format_duration,
    run_workload,
)
from raysim.report.runs import load_run
from raysim.report.timeline import draw_timeline, parse_steps
from raysim.rundir import RunDirError

if TYPE_CHECKING:
    from raysim.fit import ScriptTrials


def _scalar_type(type_hint: Any) -> Any:
    args = [a for a in typing.get_args(type_hint) if a is not type(None)]
    return args[0] if args else type_hint


def add_config_flags(parser: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    """One flag per config key, defaulting to None so that only given flags override."""
    group = parser.add_argument_group("config overrides (beat the YAML file)")
    for key, type_hint in field_types().items():
        if key in skip:
            continue
        if key == "train_config":
            group.add_argument(
                "--train-config", dest=key, action="append", type=key_value,
                metavar="KEY=VALUE", help="your function's own setting (a YAML value), "
                "repeatable; it reaches the function as config['train_config']",
            )  # fmt: skip
            continue
        flag = "--" + key.replace("_", "-")
        scalar = _scalar_type(type_hint)
        if any(typing.get_origin(a) in (dict, list) or a in (dict, list)
               for a in (*typing.get_args(type_hint), type_hint)):  # fmt: skip
            group.add_argument(flag, dest=key, type=yaml.safe_load, default=None,
                               metavar="YAML", help="a YAML value, e.g. '{1: 2.0}'")  # fmt: skip
        elif scalar is bool:
            group.add_argument(flag, dest=key, action=argparse.BooleanOptionalAction, default=None)
        else:
            group.add_argument(flag, dest=key, type=scalar, default=None, metavar=key.upper())


def key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value, e.g. width=64")
    return key.strip(), yaml.safe_load(value)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    overrides = {k: getattr(args, k) for k in field_types() if getattr(args, k, None) is not None}
    if "train_config" in overrides:  # --train-config pairs on top of the YAML's mapping
        overrides["train_config"] = dict(overrides["train_config"])
    return overrides


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    overrides = overrides_from_args(args)
    if "train_config" in overrides and args.config:
        in_file = read_yaml(args.config).get("train_config")
        if isinstance(in_file, dict):  # else the loader names the problem
            overrides["train_config"] = {**in_file, **overrides["train_config"]}
    return load_config(args.config, **overrides)


def load_train_fn(spec: str):
    """'module:function', importable from the current directory or the installed packages."""
    return load_callable("--train-fn", spec, "function")


def run_command(args: argparse.Namespace) -> int:
    if args.inject:
        args.faults = [parse_inject(text) for text in args.inject]
    if getattr(args, "resume", None):
        cfg = resume_config(args.resume, overrides_from_args(args))
    else:
        cfg = config_from_args(args)
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    train_fn = load_train_fn(args.train_fn) if getattr(args, "train_fn", None) else None
    script = launched_script(args)
    if cfg.address is None:
        make_plan(cfg, hardware_for(cfg))  # an impossible packing fails before Ray Train loads
    from raysim.experiment import run  # Ray Train: after the config's and the plan's checks

    result = run(cfg, train_fn=train_fn, resume=bool(getattr(args, "resume", None)), script=script)
    return 0 if result.summary["status"] == "finished" else 1


def launched_script(args: argparse.Namespace) -> ScriptSpec | None:
    """`raysim launch`'s script, checked before the plan (None for `raysim run`)."""
    if getattr(args, "script_argv", None) is None:
        return None
    from raysim.config.script import check_script

    spec = script_spec(script_argv_of(args), all_ranks_output=args.all_ranks)
    spec = dataclasses.replace(spec, report_every_steps=args.report_every_steps)
    check_script(spec)
    return spec


def script_argv_of(args: argparse.Namespace) -> list[str]:
    """The script and its arguments as given after raysim's flags (split_launch's `--` off)."""
    return args.script_argv[1:] if args.script_argv[:1] == ["--"] else args.script_argv


def split_launch(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`launch [flags] SCRIPT ARGS...` (or `fit`'s): everything from the script (or -m) on
    is the script's, as torchrun reads it, whatever it looks like; handed over after
    `--`."""
    launch = next(
        action.choices[argv[0]]
        for action in parser._subparsers._group_actions  # type: ignore[union-attr]
        if isinstance(action, argparse._SubParsersAction)
    )
    takes_value = {
        flag: action.nargs != 0 for flag, action in launch._option_string_actions.items()
    }
    index = 1
    while index < len(argv):
        token = argv[index]
        if token == "-m" or not token.startswith("-") or token == "--":
            break
        index += 2 if takes_value.get(token, False) and "=" not in token else 1
    script = argv[index + 1 :] if index < len(argv) and argv[index] == "--" else argv[index:]
    return [*argv[:index], "--", *script]


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers such as 1,2,4")
    return values


def _print_comparison(comparison: dict) -> None:
    for run in comparison["runs"]:
        if run["status"] != "finished":
            print(f"{run['name']:<20} {run['status']}: {run.get('error', '').splitlines()[0]}")
            continue
        if "samples_per_s" not in run:
            print(f"{run['name']:<20} nodes {run['nodes']}  epochs {run['epochs']}")
            continue
        line = f"{run['name']:<20} nodes {run['nodes']}  {run['samples_per_s']:.1f} samples/s"
        if "epoch_time_after_first_s" in run:
            line += f"  epoch {run['epoch_time_after_first_s']:.2f} s"
        if "final_test_accuracy" in run:  # the built-in experiment's; a function may have none
            line += f"  final test acc {run['final_test_accuracy']:.4f}"
        print(line)
    projection = comparison.get("projection")
    if projection:
        print(f"projected (not measured) on {projection['target']}:")
        for row in projection["rows"]:
            print(f"  {row['name']:<18} {row['machines']} machine(s), {row['gpus']} GPUs: "
                  f"{row['samples_per_s']:.1f} samples/s, speed-up {row['speedup']:.2f}x, "
                  f"efficiency {row['efficiency']:.1%}")  # fmt: skip
        for line in projection["skipped"]:
            print(f"  not projected: {line}")
        if "price" in projection:
            _print_projected_costs(projection)


def _print_projected_costs(projection: dict) -> None:
    print(f"projected cost at ${projection['usd_per_gpu_hour']:g} per GPU-hour "
          f"({projection['price']}):")  # fmt: skip
    for row in projection["rows"]:
        if "epoch_s" not in row:
            continue
        to_target = ("target not reached" if row["to_target_usd"] is None else
                     f"to target {format_duration(row['to_target_s'])}, "
                     f"${row['to_target_usd']:,.2f}")  # fmt: skip
        print(
            f"  {row['name']:<18} {row['gpus']} GPUs: epoch {format_duration(row['epoch_s'])}, "
            f"${row['epoch_usd']:,.2f}; {to_target}"
        )


def add_target_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target", metavar="KEY=VALUE,...",
        help="also project each run onto a real cluster, e.g. "
        "gpus_per_node=8,intra=nvlink,network=100gbe (or a YAML mapping or file)",
    )  # fmt: skip
    parser.add_argument(
        "--step-time-ms", type=float,
        help="with --target: one target GPU's step alone (default: each run's own)",
    )  # fmt: skip
    parser.add_argument(
        "--usd-per-gpu-hour", metavar="USD|PRESET",
        help=f"with --target: price per GPU-hour (or a list price: {', '.join(PRICES)}): "
        "each projected row's cost per epoch and to the target accuracy",
    )  # fmt: skip


def _target_of(args: argparse.Namespace) -> Any:
    """The --target cluster (None without one); a price is checked here, before any run."""
    if args.usd_per_gpu_hour is not None:
        if not args.target:
            raise ConfigError([
                "--usd-per-gpu-hour: prices the projected rows, so it needs --target, e.g. "
                "--target gpus_per_node=8,network=ib_hdr"
            ])  # fmt: skip
        parse_price(args.usd_per_gpu_hour)
    return parse_target(args.target) if args.target else None


def _cmd_compare(args: argparse.Namespace) -> int:
    target = _target_of(args)
    comparison = compare(args.run_dirs, out=args.out, target_accuracy=args.target_accuracy,
                         target=target, step_time_ms=args.step_time_ms,
                         html=args.html, usd_per_gpu_hour=args.usd_per_gpu_hour)  # fmt: skip
    _print_comparison(comparison)
    print(f"report: {args.out}/report.md")
    if args.html:
        print(f"page: {args.out}/report.html")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from raysim.sweep import sweep  # torch and Ray: after the flags' checks

    overrides = overrides_from_args(args)
    overrides.pop("num_nodes", None)
    overrides.pop("batch_size", None)
    base = load_config(args.config, **overrides)
    train_fn = load_train_fn(args.train_fn) if args.train_fn else None
    target = _target_of(args)  # before any run starts
    comparison = sweep(
        base, args.num_nodes, args.batch_size, args.target_accuracy, out=sys.stdout,
        train_fn=train_fn, target=target, step_time_ms=args.step_time_ms,
        usd_per_gpu_hour=args.usd_per_gpu_hour,
    )  # fmt: skip
    print()
    _print_comparison(comparison)
    print(f"report: {comparison['report_dir']}/report.md")
    return 0 if all(r["status"] == "finished" for r in comparison["runs"]) else 1


def _cmd_fit(args: argparse.Namespace) -> int:
    from raysim.fit import format_fit, plan_memory  # torch and Ray: after the flags' checks

    cfg = config_from_args(args)
    script = fitted_script(args)
    train_fn = load_train_fn(args.train_fn) if args.train_fn else None
    given_batch = None if script is None else script.given_batch()
    if given_batch:  # the script's batch is the one measured
        cfg = replace_config(cfg, batch_size=given_batch)
    result = plan_memory(cfg, make_plan(cfg, hardware_for(cfg)), args.resolution, train_fn, script)
    print(format_fit(result))
    _write_out(args.out, result.to_dict())
    return 0


def fitted_script(args: argparse.Namespace) -> ScriptTrials | None:
    """`raysim fit`'s script and the option its batch size is, if it fits a script."""
    script_argv = script_argv_of(args)
    if not script_argv:
        if args.batch_option:
            raise ScriptError("fit --batch-option: give the script after it, e.g. "
                              "raysim fit --batch-option batch-size train.py --lr 0.1")  # fmt: skip
        return None
    if args.train_fn:
        raise ScriptError("fit: give --train-fn or a script, not both")
    if not args.batch_option:
        raise ScriptError("fit: name the script's batch-size option, e.g. "
                          "raysim fit --batch-option batch-size train.py")  # fmt: skip
    from raysim.config.script import check_script
    from raysim.fit import ScriptTrials

    spec = script_spec(script_argv)
    check_script(spec)
    option = args.batch_option if args.batch_option.startswith("-") else f"--{args.batch_option}"
    return ScriptTrials(spec, option)


def _write_out(path: str | None, data: dict) -> None:
    """A command's result as JSON where --out says, if it says."""
    if path:
        with open(path, "w") as handle:
            json.dump(data, handle, indent=2)
        print(f"written: {path}")


def _cmd_estimate(args: argparse.Namespace) -> int:
    from raysim.estimate import estimate, format_estimate  # torch: after the flags' checks

    cfg = config_from_args(args)
    shape = tuple(int(n) for n in args.input_shape.split(",")) if args.input_shape else None
    result = estimate(cfg, args.model, shape, args.input_dtype)
    print(format_estimate(result))
    _write_out(args.out, result.to_dict())
    return 0


def _link_arg(text: str) -> str | dict:
    """A link's name, or a YAML/JSON mapping such as '{bandwidth_gbps: 80, latency_us: 5}'."""
    value = yaml.safe_load(text) if text.strip().startswith("{") else text
    return value if isinstance(value, dict | str) else text


def _project_problems(args: argparse.Namespace) -> list[str]:
    problems = []
    if args.run_dir is None:
        missing = [
            flag
            for flag, value in (
                ("--model", args.model),
                ("--batch-size", args.batch_size),
                ("--step-time-ms", args.step_time_ms),
            )
            if value is None
        ]
        if missing:
            problems.append(
                f"{', '.join(missing)}: needed without RUN_DIR (a run supplies the model, its "
                "batch and its step); e.g. --model resnet50 --batch-size 64 --step-time-ms 180"
            )  # fmt: skip
    for flag, value in (("--batch-size", args.batch_size), ("--gpus-per-node", args.gpus_per_node),
                        ("--nics-per-node", args.nics_per_node)):  # fmt: skip
        if value is not None and value < 1:
            problems.append(f"{flag}: {value!r} must be at least 1")
    if args.step_time_ms is not None and not args.step_time_ms > 0:
        problems.append(f"--step-time-ms: {args.step_time_ms!r} must be > 0 ms")
    return problems


def _cmd_project(args: argparse.Namespace) -> int:
    problems = _project_problems(args)
    if problems:
        raise ConfigError(problems)
    topology = Topology(
        nodes=1, gpus_per_node=args.gpus_per_node,
        intra=parse_link(_link_arg(args.intra), "--intra", INTRA_LINKS),
        network=parse_link(_link_arg(args.network), "--network", NETWORK_LINKS),
        nics_per_node=args.nics_per_node, algorithm=args.algorithm,
    )  # fmt: skip
    if args.strategy == "fsdp":
        return _project_fsdp(args, topology)
    if args.run_dir is not None:
        run = load_run(args.run_dir)
        work = run_workload(run, args.step_time_ms)
        if args.batch_size is not None:
            work = dataclasses.replace(work, batch_per_gpu=args.batch_size)
        title = f"{run.name} projected onto machines of {args.gpus_per_node} GPU(s)"
    else:
        from raysim.projection.model_profile import model_workload  # torch: only when asked

        work = model_workload(args.model, args.batch_size, args.step_time_ms)
        title = f"{args.model} projected onto machines of {args.gpus_per_node} GPU(s)"
    rows = project_scaling(work, topology, args.nodes)
    print(format_cluster_table(rows, title=title, topology=topology))
    for line in describe_inputs(work, topology):
        print(f"  {line}")
    if args.usd_per_gpu_hour is not None:
        _print_costs(args, rows, run if args.run_dir is not None else None)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(cluster_rows_json(rows, work), handle, indent=2)
        print(f"written: {args.out}")
    return 0


def _project_fsdp(args: argparse.Namespace, topology: Topology) -> int:
    """`raysim project --strategy fsdp`: a torchvision model's FSDP units, each gathered
    for forward and backward and its gradients reduce-scattered (raysim.projection.fsdp_step)."""
    if args.run_dir is not None:
        raise ConfigError([
            "--strategy fsdp: projects a --model (a run does not record its FSDP units yet); "
            "e.g. --model resnet50 --batch-size 64 --step-time-ms 180 --strategy fsdp"
        ])  # fmt: skip
    from raysim.projection.model_profile import fsdp_model_workload  # torch: only when asked

    work = fsdp_model_workload(args.model, args.batch_size, args.step_time_ms)
    rows = project_fsdp_scaling(work, topology, args.nodes)
    title = f"{args.model} under FSDP projected onto machines of {args.gpus_per_node} GPU(s)"
    print(format_cluster_table(rows, title=title, topology=topology, strategy="fsdp"))
    for line in describe_fsdp_inputs(work, topology):
        print(f"  {line}")
    if args.usd_per_gpu_hour is not None:
        _print_costs(args, rows, None)
    _write_out(args.out, [{**dataclasses.asdict(row), "strategy": "fsdp",
                           "batch_per_gpu": work.batch_per_gpu} for row in rows])  # fmt: skip
    return 0


def _print_costs(args: argparse.Namespace, rows: list, run: Any) -> None:
    """Cost per epoch and, when the run reached --target-accuracy, time and cost to it."""
    price, source = parse_price(args.usd_per_gpu_hour)
    epoch_samples, reached = args.epoch_samples, None
    if run is not None:
        epoch_samples = epoch_samples or run.epochs[-1]["train_samples"]
        if args.target_accuracy is not None:
            reached = time_to_target(run, args.target_accuracy)["samples_to_target"]
    epoch_samples = epoch_samples or IMAGENET_TRAIN_SAMPLES
    costs = [cost_of(row, epoch_samples, price, reached) for row in rows]
    print()
    print(format_cost_table(costs, title=f"cost at ${price:g} per GPU-hour ({source})"))
    print(f"  epoch: {epoch_samples} samples")
    if args.target_accuracy is not None:
        print(f"  to target {args.target_accuracy:g}: "
              + (f"{reached} samples, as the run took to reach it (same global batch assumed)"
                 if reached else "not reached in the run (no figure)"))  # fmt: skip


def _cmd_up(args: argparse.Namespace) -> int:
    state = up(args.cpus, args.dashboard_port)
    print(f"raysim: cluster up at {state.address} ({state.cpus} CPUs, the simulated device)")
    print(dashboard_banner(state.dashboard_url, state.metrics_url))
    print("        run on it: raysim run --address auto ...; end it: raysim down")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    state = down()
    if state is None:
        print("raysim: no raysim cluster is up")
        return 0
    print(f"raysim: cluster at {state.address} ended (Ray's logs stay in {state.temp_dir})")
    return 0


def _cmd_trace(args: argparse.Namespace) -> int:
    steps = parse_steps(args.steps) if args.steps else None
    out = args.out or os.path.join(args.run_dir, "timeline.png")
    timeline = draw_timeline(args.run_dir, out, args.epoch, steps)
    print(
        f"timeline: {out} ({len(timeline.lanes)} nodes, epoch {timeline.epoch}, steps "
        f"{', '.join(map(str, timeline.steps))}); all traced steps: {args.run_dir}/trace.json "
        "in ui.perfetto.dev or chrome://tracing"
    )
    return 0


class FlagParser(argparse.ArgumentParser):
    """argparse without abbreviated flags: `--num-node 4` is a typo to be told, not
    `--num-nodes 4` (its subcommands' parsers are of this class too)."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = FlagParser(prog="raysim", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run one experiment on the simulated cluster")
    run_parser.add_argument("--config", help="YAML config file (see configs/)")
    run_parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit"
    )
    run_parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a stopped run from its latest checkpoint"
    )
    run_parser.add_argument(
        "--train-fn", metavar="MODULE:FUNCTION",
        help="your own per-node training function instead of the built-in ResNet18 experiment",
    )  # fmt: skip
    run_parser.add_argument(
        "--inject", action="append", metavar="FAULT",
        help="kind:rank=R,epoch=E[,step=S][,seconds=T], e.g. worker_crash:rank=1,epoch=2",
    )  # fmt: skip
    add_config_flags(run_parser)
    run_parser.set_defaults(handler=run_command)

    launch_parser = commands.add_parser(
        "launch", help="run an unmodified torchrun-style script on the simulated cluster",
        usage="raysim launch [raysim run's flags] SCRIPT [SCRIPT ARGS...]  (or -m MODULE ...)",
    )  # fmt: skip
    launch_parser.add_argument("--config", help="YAML config file (see configs/)")
    launch_parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit"
    )
    launch_parser.add_argument(
        "--inject", action="append", metavar="FAULT",
        help="kind:rank=R,epoch=E[,step=S][,seconds=T], e.g. worker_crash:rank=1,epoch=2",
    )  # fmt: skip
    launch_parser.add_argument(
        "--all-ranks", action="store_true",
        help="every node's output on the console, prefixed by node (default: rank 0's)",
    )  # fmt: skip
    launch_parser.add_argument(
        "--report-every-steps", type=int, default=REPORT_EVERY_STEPS, metavar="K",
        help="a metrics line per K optimizer steps where no DistributedSampler reveals the "
        f"script's epochs (default {REPORT_EVERY_STEPS})",
    )  # fmt: skip
    add_config_flags(launch_parser)
    launch_parser.add_argument(
        "script_argv", nargs=argparse.REMAINDER, metavar="SCRIPT [SCRIPT ARGS...]",
        help="the script and its own arguments, as torchrun takes them; or -m MODULE ...",
    )  # fmt: skip
    launch_parser.set_defaults(handler=run_command)

    compare_parser = commands.add_parser("compare", help="compare finished run directories")
    compare_parser.add_argument("run_dirs", nargs="+", help="run directories, e.g. runs/<name>")
    compare_parser.add_argument("--out", default="report", help="report folder (default report)")
    compare_parser.add_argument(
        "--target-accuracy", type=float, help="default: 90%% of the best final accuracy"
    )
    compare_parser.add_argument(
        "--html", action="store_true",
        help="also write report.html: one page with every table and plot, opens from disk",
    )  # fmt: skip
    add_target_flags(compare_parser)
    compare_parser.set_defaults(handler=_cmd_compare)

    sweep_parser = commands.add_parser(
        "sweep", help="run at several node counts (and batch sizes) in one Ray session, compare"
    )
    sweep_parser.add_argument("--config", help="YAML config file (see configs/)")
    sweep_parser.add_argument("--target-accuracy", type=float)
    add_config_flags(sweep_parser, skip=("num_nodes", "batch_size"))
    sweep_parser.add_argument("--num-nodes", type=_int_list, required=True, help="e.g. 1,2,4")
    sweep_parser.add_argument("--batch-size", type=_int_list, help="per node, e.g. 8,32")
    sweep_parser.add_argument(
        "--train-fn", metavar="MODULE:FUNCTION", help="your own per-node training function"
    )
    add_target_flags(sweep_parser)
    sweep_parser.set_defaults(handler=_cmd_sweep)

    fit_parser = commands.add_parser(
        "fit", help="find the largest batch that fits one node's memory partition"
    )
    fit_parser.add_argument("--config", help="YAML config file (see configs/)")
    fit_parser.add_argument("--resolution", type=int, default=1, help="batch search step")
    fit_parser.add_argument("--out", help="also write the result as JSON here")
    fit_parser.add_argument(
        "--train-fn", metavar="MODULE:FUNCTION",
        help="your own per-node training function (it reads config['batch_size'])",
    )  # fmt: skip
    fit_parser.add_argument(
        "--batch-option", metavar="NAME",
        help="a script's per-process batch-size option (e.g. batch-size): each trial sets it "
        "on the script's command line and ends the script after a few optimizer steps",
    )  # fmt: skip
    add_config_flags(fit_parser)
    fit_parser.add_argument(
        "script_argv", nargs=argparse.REMAINDER, metavar="[SCRIPT [SCRIPT ARGS...]]",
        help="an unmodified torchrun-style script to fit, as `raysim launch` takes it",
    )  # fmt: skip
    fit_parser.set_defaults(handler=_cmd_fit)

    estimate_parser = commands.add_parser(
        "estimate",
        help="each node's peak memory per strategy at --num-nodes, without running (seconds)",
    )
    estimate_parser.add_argument("--config", help="YAML config file (see configs/)")
    estimate_parser.add_argument(
        "--model", metavar="MODULE:FACTORY", help="a factory returning an nn.Module (default:"
        " the built-in ResNet18)",
    )  # fmt: skip
    estimate_parser.add_argument("--input-shape", help="one sample's shape, e.g. 3,32,32")
    estimate_parser.add_argument(
        "--input-dtype", default="float32", help="the input's dtype: int64 for token ids"
    )
    estimate_parser.add_argument("--out", help="also write the estimate as JSON here")
    add_config_flags(estimate_parser)
    estimate_parser.set_defaults(handler=_cmd_estimate)

    project_parser = commands.add_parser(
        "project",
        help="predict step time and scaling on a real cluster, from a run or a model",
    )
    project_parser.add_argument("run_dir", nargs="?", help="a finished run directory")
    project_parser.add_argument("--model", help="a torchvision classification model (no run)")
    project_parser.add_argument("--batch-size", type=int, help="per GPU (default: the run's)")
    project_parser.add_argument(
        "--step-time-ms", type=float,
        help="one target GPU's step alone (forward, backward, optimizer); default: the run's",
    )  # fmt: skip
    project_parser.add_argument("--gpus-per-node", type=int, default=1, help="GPUs per machine")
    project_parser.add_argument(
        "--intra", default="nvlink", help=f"link inside a machine: {', '.join(INTRA_LINKS)}"
    )
    project_parser.add_argument(
        "--network", default="10gbe",
        help=f"link between machines: {', '.join(NETWORK_LINKS)} (raysim run's names, here "
        "at what an all-reduce achieves), or '{bandwidth_gbps: achieved, latency_us: ...}'",
    )  # fmt: skip
    project_parser.add_argument("--nics-per-node", type=int, default=1, help="default 1")
    project_parser.add_argument(
        "--algorithm", default="nccl", choices=ALGORITHMS,
        help="nccl (ring or tree by size, as NCCL chooses), ring, tree, hierarchical",
    )  # fmt: skip
    project_parser.add_argument(
        "--nodes", type=_int_list, default=[2**k for k in range(11)], help="machines, e.g. 1,2,4"
    )
    project_parser.add_argument(
        "--usd-per-gpu-hour", metavar="USD|PRESET",
        help=f"price per GPU-hour (or a list price: {', '.join(PRICES)}): cost per epoch",
    )  # fmt: skip
    project_parser.add_argument(
        "--epoch-samples", type=int,
        help="samples per epoch for the cost (default: the run's epoch; ImageNet's with --model)",
    )  # fmt: skip
    project_parser.add_argument(
        "--target-accuracy", type=float,
        help="with a run and a price: time and cost to the accuracy the run reached",
    )  # fmt: skip
    project_parser.add_argument(
        "--strategy", choices=("ddp", "fsdp"), default="ddp",
        help="ddp (bucketed all-reduce beside backward; the default) or fsdp (each unit "
        "all-gathered for forward and backward, its gradients reduce-scattered; with --model)",
    )  # fmt: skip
    project_parser.add_argument("--out", help="also write the rows as JSON here")
    project_parser.set_defaults(handler=_cmd_project)

    up_parser = commands.add_parser(
        "up", help="start a standing simulated cluster with the dashboard (for --address auto)"
    )
    up_parser.add_argument("--cpus", type=int, help="CPUs it offers (default: every core)")
    up_parser.add_argument(
        "--dashboard-port", type=int, default=8265, help="default 8265; 0 picks a free one"
    )
    up_parser.set_defaults(handler=_cmd_up)
    down_parser = commands.add_parser("down", help="end the cluster that `raysim up` started")
    down_parser.set_defaults(handler=_cmd_down)

    trace_parser = commands.add_parser(
        "trace", help="draw a run's timeline (trace.json) of a few steps on every node as a PNG"
    )
    trace_parser.add_argument("run_dir", help="a run directory with trace.json")
    trace_parser.add_argument("--epoch", type=int, help="default: the last traced epoch")
    trace_parser.add_argument(
        "--steps", help="steps after the epoch's start, e.g. 2, 1-3 or 1,3 (default: first 3)"
    )
    trace_parser.add_argument(
        "--out", help="the PNG to write; default: timeline.png in the run directory"
    )
    trace_parser.set_defaults(handler=_cmd_trace)
    return parser


def user_errors() -> tuple[type[Exception], ...]:
    """Errors the user can fix. A DataError can only come from a loaded raysim.builtin.data,
    so a config error is reported without importing torch for it."""
    errors: tuple[type[Exception], ...] = (ConfigError, RunDirError, FileNotFoundError)
    data = sys.modules.get("raysim.builtin.data")
    return errors if data is None else (*errors, data.DataError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["launch"], ["fit"]):
        argv = split_launch(parser, argv)
    args = parser.parse_args(argv)
    return guarded(args.handler, args)


def guarded(handler, args: argparse.Namespace) -> int:
    try:
        return handler(args)
    except RunFailedError as err:
        print(f"raysim: error: {err}", file=sys.stderr)
        return 1
    except user_errors() as err:
        print(f"raysim: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("raysim: interrupted; the run directory keeps what was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
