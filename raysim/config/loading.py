"""Loading a config: defaults < YAML file < explicit overrides, strict, all errors at once.

Unknown keys (with a "did you mean"), wrong types and out-of-range values are all
collected and reported together, each naming the key, the value and the fix.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from raysim.config.faults import (
    RAY_NODE_KINDS,
    fault_problems,
    parse_faults,
    step_problems,
)
from raysim.config.network import parse_compression, parse_network
from raysim.config.schema import CHOICES, EXCLUSIVE_LOW, INPUT_TYPES, RANGES, ExperimentConfig
from raysim.config.tracking import parse_tracking, tracking_problems
from raysim.errors import ConfigError, did_you_mean, is_number
from raysim.rundir import CONFIG_FILE, is_run_dir


def field_types() -> dict[str, Any]:
    """Each key's accepted input type (the parsed keys accept their YAML forms)."""
    hints = typing.get_type_hints(ExperimentConfig)
    return {
        f.name: INPUT_TYPES.get(f.name, hints[f.name]) for f in dataclasses.fields(ExperimentConfig)
    }


def config_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(ExperimentConfig)]


def _accepts(type_hint: Any, value: Any) -> bool:
    args = typing.get_args(type_hint)
    if typing.get_origin(type_hint) in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in args)
    if type_hint is type(None):
        return value is None
    if type_hint is bool:
        return isinstance(value, bool)
    if type_hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if type_hint is float:
        return is_number(value)
    if type_hint is str:
        return isinstance(value, str)
    return True


def _type_name(type_hint: Any) -> str:
    if typing.get_origin(type_hint) in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(type_hint) if a is not type(None)]
        return " or ".join(names) + " (or null)"
    return getattr(type_hint, "__name__", str(type_hint))


def _unknown_key_problem(key: str, known: list[str]) -> str:
    hint = did_you_mean(key, known) or f"valid keys: {', '.join(known)}"
    return f"unknown key '{key}': {hint.strip()}"


def _range_problems(values: dict[str, Any]) -> list[str]:
    problems = []
    for key, (low, high, fix) in RANGES.items():
        value = values.get(key)
        if not is_number(value):
            continue
        too_low = low is not None and (value <= low if key in EXCLUSIVE_LOW else value < low)
        too_high = high is not None and value > high
        if too_low or too_high:
            problems.append(f"{key}: {value!r} is out of range; {fix}")
    problems += _emulation_problems(values)
    problems += _topology_problems(values)
    problems += _fault_timing_problems(values)
    problems += tracking_problems(values.get("tracking"))
    return problems + _choice_problems(values)


def _choice_problems(values: dict[str, Any]) -> list[str]:
    problems = []
    for key, choices in CHOICES.items():
        value = values.get(key)
        if isinstance(value, str) and value not in choices:
            hint = did_you_mean(value, choices)
            problem = f"{key}: {value!r} is not one of {', '.join(choices)}"
            problems.append(f"{problem}; {hint.strip()}" if hint else problem)
    return problems


def _emulation_problems(values: dict[str, Any]) -> list[str]:
    problems = []
    for parse, key in ((parse_network, "network"), (parse_compression, "grad_compression")):
        try:
            parse(values.get(key))
        except ConfigError as err:
            problems += err.problems
    nodes = values.get("num_nodes", 1)
    problems += fault_problems(values.get("faults"), nodes)
    for rank, slowdown in (values.get("stragglers") or {}).items():
        if not isinstance(rank, int) or not 0 <= rank < nodes:
            problems.append(f"stragglers: rank {rank!r} is not a node; use 0 to {nodes - 1}")
        if not is_number(slowdown) or slowdown < 1:
            problems.append(f"stragglers: slowdown {slowdown!r} for rank {rank}; use 1 or more")
    return problems


def _topology_problems(values: dict[str, Any]) -> list[str]:
    """Cross-key rules of multi-node topology, elastic size and node loss."""
    nodes = values.get("num_nodes", 1)
    multi_node = values.get("topology") == "multi_node"
    min_nodes = values.get("min_nodes")
    elastic = isinstance(min_nodes, int) and min_nodes < nodes
    problems = []
    if isinstance(min_nodes, int) and min_nodes > nodes:
        problems.append(f"min_nodes: {min_nodes} is more than num_nodes {nodes}; use 1 to {nodes}")
    if multi_node and values.get("address") is not None:
        problems.append(
            "topology: multi_node starts a local cluster of its own; on an existing cluster "
            "(address) every machine is a node already: use topology: single_host"
        )
    lost = [f for f in values.get("faults") or [] if isinstance(f, dict)]
    for kind in sorted({f.get("kind") for f in lost} & set(RAY_NODE_KINDS)):
        if not multi_node:
            problems.append(
                f"faults: {kind} acts on a simulated node's Ray node, and on single_host "
                "every node shares one: use topology: multi_node"
            )
    node_loss = any(f.get("kind") == "node_loss" for f in lost)
    if node_loss and values.get("max_failures", 0) > 0 and not elastic:
        problems.append(
            "faults: node_loss takes a node away for good, so a fixed-size run would wait "
            f"for it forever: set min_nodes below num_nodes (e.g. {max(1, nodes - 1)}) so "
            "Ray Train goes on with fewer nodes, or max_failures: 0 to end the run there"
        )
    return problems


def _fault_timing_problems(values: dict[str, Any]) -> list[str]:
    """A hang needs the watch that ends it; a fault past the epoch's known end never fires."""
    faults = [f for f in values.get("faults") or [] if isinstance(f, dict)]
    problems = []
    hangs = any(f.get("kind") == "hang" for f in faults)
    if hangs and values.get("num_nodes", 1) < 2:
        problems.append("faults: a hang is a node its peers wait for: use num_nodes 2 or more")
    if hangs and values.get("collective_timeout_s") is None:
        problems.append(
            "faults: a hang waits for ever without collective_timeout_s: set it (e.g. "
            "--collective-timeout-s 10) so raysim names the node and ends the worker group"
        )
    cap = values.get("max_steps_per_epoch")
    if isinstance(cap, int) and not problems and not fault_problems(faults, 1 << 30):
        problems += step_problems(parse_faults(faults), cap, f"max_steps_per_epoch {cap}")
    return problems


def _parsed(values: dict[str, Any]) -> dict[str, Any]:
    """The emulation keys as the dataclass holds them (checked already)."""
    parsed = {k: v for k, v in values.items() if v is not None or k not in INPUT_TYPES}
    if "network" in parsed:
        parsed["network"] = parse_network(parsed["network"])
    if "grad_compression" in parsed:
        parsed["grad_compression"] = parse_compression(parsed["grad_compression"])
    if "faults" in parsed:
        parsed["faults"] = parse_faults(parsed["faults"])
    if "stragglers" in parsed:
        parsed["stragglers"] = {int(r): float(s) for r, s in parsed["stragglers"].items()}
    if "tracking" in parsed:
        parsed["tracking"] = parse_tracking(parsed["tracking"])
    return parsed


def build_config(values: dict[str, Any], source: str | None = None) -> ExperimentConfig:
    """Validate a flat mapping of config keys and build the config, or raise ConfigError."""
    types_by_key = field_types()
    known = config_keys()
    problems = [_unknown_key_problem(k, known) for k in values if k not in known]
    for key, value in values.items():
        if key in known and not _accepts(types_by_key[key], value):
            problems.append(
                f"{key}: {value!r} is a {type(value).__name__}; "
                f"expected {_type_name(types_by_key[key])}"
            )
    if not problems:
        problems = _range_problems(values)
    if problems:
        raise ConfigError(problems, source)
    return ExperimentConfig(**_parsed(values))


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"config file {str(path)!r} does not exist; check the path"])
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError([f"not valid YAML: {err}"], str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError(["the file must be a mapping of key: value lines"], str(path))
    return data


def load_config(path: str | Path | None = None, **overrides: Any) -> ExperimentConfig:
    """Defaults < YAML file (if given) < overrides (None values are ignored)."""
    values: dict[str, Any] = read_yaml(path) if path is not None else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return build_config(values, source=str(path) if path is not None else None)


def resume_config(run_dir: str | Path, overrides: dict[str, Any]) -> ExperimentConfig:
    """The config a run directory was made with, to continue it there (overrides such as
    num_epochs may extend it)."""
    path = Path(run_dir).resolve()
    if not is_run_dir(path):
        raise ConfigError(
            [f"--resume {run_dir}: not a raysim run directory (no {CONFIG_FILE}); give a "
             "folder made by `raysim run`, e.g. runs/<name>"]
        )  # fmt: skip
    changes = {**overrides, "run_dir": str(path.parent), "run_name": path.name}
    return load_config(path / CONFIG_FILE, **changes)


def replace(cfg: ExperimentConfig, **changes: Any) -> ExperimentConfig:
    """A validated copy with some keys changed."""
    return build_config({**cfg.to_dict(), **changes})


def dump_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
