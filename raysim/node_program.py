"""What each simulated node runs, as the spine is handed it: its launcher, its name, the
modules the driver imports ahead for it and what the driver checks of it before Ray
starts. Built once per run: the built-in experiment, a user's function or a script."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from raysim.builtin.checks import (
    check_data,
    check_weights,
    decodes_images,
    parameter_count,
    steps_per_epoch,
)
from raysim.config import ConfigError, ExperimentConfig
from raysim.config.faults import step_problems
from raysim.config.script import ScriptSpec, check_script
from raysim.driver_startup import DriverStartup
from raysim.plan import PlanError, ResourcePlan
from raysim.plan.memory_floor import ADAM_MOMENTS, state_floor_problem
from raysim.rundir import raysim_home
from raysim.worker.strategies import get_strategy

if TYPE_CHECKING:
    from raysim.worker.launchers import Launcher

TrainFn = Callable[[dict], None]
Check = Callable[[ExperimentConfig, ResourcePlan, DriverStartup], None]

BUILTIN_NAME = "builtin:resnet18"


def no_checks(cfg: ExperimentConfig, plan: ResourcePlan, startup: DriverStartup) -> None:
    """A user's function: raysim knows nothing it needs before it runs."""


@dataclass(frozen=True)
class NodeProgram:
    """Handed to the spine, which names no experiment."""

    name: str
    """How summary.json names it: "builtin:resnet18", the function's module.name, or
    "script:" and the script."""
    load: Callable[[], Launcher]
    """How every node runs it (a function called with the config as a dict, or a script),
    loaded once the training stack is imported (the launchers import torch)."""
    imports: tuple[str, ...] = ()
    """Modules the driver imports ahead for it, on the start-up thread."""
    check: Check = no_checks
    """Before Ray starts: what would fail every node alike."""
    epochs_known: bool = True
    """Whether the config's num_epochs is how many epochs it runs (a script decides)."""
    console_output: str = ""
    """Whose own output the console shows as it runs: "" (none: it reports its lines),
    "rank0" or "all" (a script's, prefixed by node)."""


def check_state_fits(cfg: ExperimentConfig, plan: ResourcePlan) -> None:
    """The built-in model's training state must fit the budget it is held to."""
    if plan.device_kind == "cpu" and not cfg.enforce_memory:
        return
    state = get_strategy(cfg.strategy).training_state(
        parameter_count(cfg.num_classes), ADAM_MOMENTS, "Adam", cfg.num_nodes
    )
    problem = state_floor_problem(
        state,
        plan.memory_budget_bytes,
        plan.memory_fraction,
        plan.device_memory_bytes,
    )
    if problem is not None:
        raise PlanError([problem])


def check_fault_steps(cfg: ExperimentConfig) -> None:
    """A fault at a step the built-in's epoch never reaches would never fire."""
    steps = steps_per_epoch(cfg)
    if steps is None:
        return
    why = f"{cfg.dataset}, {cfg.num_nodes} node(s) × batch_size {cfg.batch_size}"
    problems = step_problems(cfg.faults, steps, why)
    if problems:
        raise PlanError(problems)


def check_data_dir_read(cfg: ExperimentConfig) -> None:
    """A data_dir of the user's beside a data set that never reads it: they meant their
    images, and would train on digits or noise without a word."""
    if decodes_images(cfg) or cfg.data_dir == ExperimentConfig.data_dir:
        return
    raise ConfigError([
        f"data_dir {cfg.data_dir} is read only by dataset imagefolder, and dataset is "
        f"{cfg.dataset}; add --dataset imagefolder to train on it, or leave data_dir out"
    ])  # fmt: skip


def builtin_checks(cfg: ExperimentConfig, plan: ResourcePlan, startup: DriverStartup) -> None:
    """The built-in's state floor, weights file and data set."""
    check_state_fits(cfg, plan)
    check_fault_steps(cfg)
    check_data_dir_read(cfg)
    check_weights(cfg.weights_path)
    if decodes_images(cfg):  # decoding imports torch: not while the thread does
        startup.imports_done()
    check_data(cfg, raysim_home() / "cache")


def _function_launcher(train_fn: TrainFn) -> Launcher:
    from raysim.worker.launchers import FunctionLauncher

    return FunctionLauncher(train_fn)


def _load_builtin() -> Launcher:
    from raysim.builtin import resnet18_experiment

    return _function_launcher(resnet18_experiment)


def ship_by_value(train_fn: Callable) -> None:
    """The workers unpickle the function; a module of the user's own
    (not installed, maybe not on their path) travels with it instead of by name."""
    from ray import cloudpickle  # Ray pickles with its own copy

    module = sys.modules.get(getattr(train_fn, "__module__", "") or "")
    if module is None or module.__name__ == "__main__":
        return  # __main__ is pickled by value already
    if "site-packages" not in (getattr(module, "__file__", "") or ""):
        cloudpickle.register_pickle_by_value(module)


def _shipped(train_fn: TrainFn) -> Launcher:
    ship_by_value(train_fn)
    return _function_launcher(train_fn)


def _script_launcher(spec: ScriptSpec) -> Launcher:
    from raysim.worker.launchers import ScriptLauncher

    return ScriptLauncher(spec)


def script_program(spec: ScriptSpec) -> NodeProgram:
    """An unmodified torchrun-style script; checked before Ray: it exists, compiles and
    does not spawn its own processes."""
    check_script(spec)
    return NodeProgram(
        spec.name,
        functools.partial(_script_launcher, spec),
        epochs_known=False,
        console_output="all" if spec.all_ranks_output else "rank0",
    )


def node_program(train_fn: TrainFn | None) -> NodeProgram:
    """The built-in experiment (None), or the user's function."""
    if train_fn is None:
        return NodeProgram(
            BUILTIN_NAME, _load_builtin, imports=("raysim.builtin.loop",), check=builtin_checks
        )
    name = f"{getattr(train_fn, '__module__', '?')}.{getattr(train_fn, '__qualname__', '?')}"
    return NodeProgram(name, functools.partial(_shipped, train_fn))
