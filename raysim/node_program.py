"""What each simulated node runs, as the spine is handed it: the function, its name, the
modules the driver imports ahead for it and what the driver checks of it before Ray
starts. Built once per run: the built-in experiment, or a user's function."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass

from raysim.builtin.checks import (
    check_data,
    check_weights,
    decodes_images,
    parameter_count,
    steps_per_epoch,
)
from raysim.config import ExperimentConfig
from raysim.config.faults import step_problems
from raysim.driver_startup import DriverStartup
from raysim.plan import PlanError, ResourcePlan
from raysim.plan.memory_floor import ADAM_MOMENTS, state_floor_problem
from raysim.rundir import raysim_home
from raysim.worker.strategies import get_strategy

TrainFn = Callable[[dict], None]
Check = Callable[[ExperimentConfig, ResourcePlan, DriverStartup], None]

BUILTIN_NAME = "builtin:resnet18"


def no_checks(cfg: ExperimentConfig, plan: ResourcePlan, startup: DriverStartup) -> None:
    """A user's function: raysim knows nothing it needs before it runs."""


@dataclass(frozen=True)
class NodeProgram:
    """Handed to the spine, which names no experiment."""

    name: str
    """How summary.json names it: "builtin:resnet18", or the function's module.name."""
    load: Callable[[], TrainFn]
    """The function Ray Train calls on every node with the config as a dict, loaded once the
    training stack is imported (the built-in's module imports torch)."""
    imports: tuple[str, ...] = ()
    """Modules the driver imports ahead for it, on the start-up thread."""
    check: Check = no_checks
    """Before Ray starts: what would fail every node alike."""


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


def builtin_checks(cfg: ExperimentConfig, plan: ResourcePlan, startup: DriverStartup) -> None:
    """The built-in's state floor, weights file and data set."""
    check_state_fits(cfg, plan)
    check_fault_steps(cfg)
    check_weights(cfg.weights_path)
    if decodes_images(cfg):  # decoding imports torch: not while the thread does
        startup.imports_done()
    check_data(cfg, raysim_home() / "cache")


def _load_builtin() -> TrainFn:
    from raysim.builtin import resnet18_experiment

    return resnet18_experiment


def ship_by_value(train_fn: Callable) -> None:
    """Ray's controller and workers unpickle the function; a module of the user's own
    (not installed, maybe not on their path) travels with it instead of by name."""
    from ray import cloudpickle  # Ray pickles with its own copy

    module = sys.modules.get(getattr(train_fn, "__module__", "") or "")
    if module is None or module.__name__ == "__main__":
        return  # __main__ is pickled by value already
    if "site-packages" not in (getattr(module, "__file__", "") or ""):
        cloudpickle.register_pickle_by_value(module)


def _shipped(train_fn: TrainFn) -> TrainFn:
    ship_by_value(train_fn)
    return train_fn


def node_program(train_fn: TrainFn | None) -> NodeProgram:
    """The built-in experiment (None), or the user's function."""
    if train_fn is None:
        return NodeProgram(
            BUILTIN_NAME, _load_builtin, imports=("raysim.builtin.loop",), check=builtin_checks
        )
    name = f"{getattr(train_fn, '__module__', '?')}.{getattr(train_fn, '__qualname__', '?')}"
    return NodeProgram(name, functools.partial(_shipped, train_fn))
