"""The `raysim` command. Every config key is also a flag (--num-nodes for num_nodes).

Precedence: defaults < --config YAML < flags. Errors a user can fix print one
clear message and exit 2; a failed training run exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import typing
from collections.abc import Sequence
from typing import Any

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
    parse_network,
    read_yaml,
    resume_config,
)
from raysim.failures import RunFailedError
from raysim.plan import make_plan
from raysim.report import ReportError, compare
from raysim.report.projection import format_table, project_run
from raysim.report.timeline import draw_timeline, parse_steps


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
            group.add_argument(flag, dest=key, action="store_true", default=None)
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
    module_name, _, function_name = spec.partition(":")
    fix = "give module:function, importable from the current directory"
    if not module_name or not function_name:
        raise ConfigError([f"--train-fn {spec}: not of the form module:function; {fix}"])
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # the user's module: any error in it means it does not import
        problem = (
            f"--train-fn {spec}: cannot import {module_name!r} ({type(err).__name__}: {err}); {fix}"
        )
        raise ConfigError([problem]) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError([f"--train-fn {spec}: {module_name} has no function {function_name!r}"])
    return function


def run_command(args: argparse.Namespace) -> int:
    if args.inject:
        args.faults = [parse_inject(text) for text in args.inject]
    if args.resume:
        cfg = resume_config(args.resume, overrides_from_args(args))
    else:
        cfg = config_from_args(args)
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    train_fn = load_train_fn(args.train_fn) if args.train_fn else None
    from raysim.experiment import run  # torch and Ray: after the config's checks

    result = run(cfg, train_fn=train_fn, resume=bool(args.resume))
    return 0 if result.summary["status"] == "finished" else 1


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
        print(
            f"{run['name']:<20} nodes {run['nodes']}  {run['samples_per_s']:.1f} samples/s  "
            f"epoch {run['epoch_time_after_first_s']:.2f} s  "
            f"final test acc {run['final_test_accuracy']:.4f}"
        )


def _cmd_compare(args: argparse.Namespace) -> int:
    comparison = compare(args.run_dirs, out=args.out, target_accuracy=args.target_accuracy)
    _print_comparison(comparison)
    print(f"report: {args.out}/report.md")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from raysim.sweep import sweep  # torch and Ray: after the flags' checks

    overrides = overrides_from_args(args)
    overrides.pop("num_nodes", None)
    overrides.pop("batch_size", None)
    base = load_config(args.config, **overrides)
    train_fn = load_train_fn(args.train_fn) if args.train_fn else None
    comparison = sweep(
        base, args.num_nodes, args.batch_size, args.target_accuracy, out=sys.stdout,
        train_fn=train_fn,
    )  # fmt: skip
    print()
    _print_comparison(comparison)
    print(f"report: {comparison['report_dir']}/report.md")
    return 0 if all(r["status"] == "finished" for r in comparison["runs"]) else 1


def _cmd_fit(args: argparse.Namespace) -> int:
    from raysim.fit import format_fit, plan_memory  # torch and Ray: after the flags' checks

    cfg = config_from_args(args)
    train_fn = load_train_fn(args.train_fn) if args.train_fn else None
    result = plan_memory(cfg, make_plan(cfg, hardware_for(cfg)), args.resolution, train_fn)
    print(format_fit(result))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result.to_dict(), handle, indent=2)
        print(f"written: {args.out}")
    return 0


def _cmd_project(args: argparse.Namespace) -> int:
    spec = parse_network(args.network)
    run, rows = project_run(args.run_dir, spec, args.nodes)
    print(format_table(rows, title=f"{run.name} on {spec.describe()}"))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump([row.__dict__ for row in rows], handle, indent=2)
        print(f"written: {args.out}")
    return 0


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
    timeline = draw_timeline(args.run_dir, args.out, args.epoch, steps)
    print(
        f"timeline: {args.out} ({len(timeline.lanes)} nodes, epoch {timeline.epoch}, steps "
        f"{', '.join(map(str, timeline.steps))}); all traced steps: {args.run_dir}/trace.json "
        "in ui.perfetto.dev or chrome://tracing"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raysim", description=__doc__.splitlines()[0])
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

    compare_parser = commands.add_parser("compare", help="compare finished run directories")
    compare_parser.add_argument("run_dirs", nargs="+", help="run directories, e.g. runs/<name>")
    compare_parser.add_argument("--out", default="report", help="report folder (default report)")
    compare_parser.add_argument(
        "--target-accuracy", type=float, help="default: 90%% of the best final accuracy"
    )
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
    add_config_flags(fit_parser)
    fit_parser.set_defaults(handler=_cmd_fit)

    project_parser = commands.add_parser(
        "project", help="predict step time and scaling at real cluster sizes from a run"
    )
    project_parser.add_argument("run_dir", help="a finished run directory")
    project_parser.add_argument("--network", default="10gbe", help="preset, e.g. 10gbe, ib_hdr")
    project_parser.add_argument(
        "--nodes", type=_int_list, default=[2**k for k in range(11)], help="e.g. 1,2,4,8"
    )
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
    trace_parser.add_argument("--out", default="timeline.png", help="default timeline.png")
    trace_parser.set_defaults(handler=_cmd_trace)
    return parser


def user_errors() -> tuple[type[Exception], ...]:
    """Errors the user can fix. A DataError can only come from a loaded raysim.builtin.data,
    so a config error is reported without importing torch for it."""
    errors: tuple[type[Exception], ...] = (ConfigError, ReportError, FileNotFoundError)
    data = sys.modules.get("raysim.builtin.data")
    return errors if data is None else (*errors, data.DataError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
