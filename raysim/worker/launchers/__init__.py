"""Launchers: how the training runs on a node (a function, or an unmodified script), and
the entry Ray Train calls on every worker (run_node)."""

from raysim.worker.launchers.base import Launcher
from raysim.worker.launchers.function import FunctionLauncher
from raysim.worker.launchers.node import NodeError, run_node
from raysim.worker.launchers.script import ScriptLauncher

__all__ = ["FunctionLauncher", "Launcher", "NodeError", "ScriptLauncher", "run_node"]
