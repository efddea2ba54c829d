"""What `raysim launch` runs on every node: an unmodified torchrun-style script (a path or
`-m module`) with its own arguments, read from the command line as torchrun reads it."""

from __future__ import annotations

import ast
import os
from collections.abc import Sequence
from dataclasses import dataclass

from raysim.errors import ConfigError


class ScriptError(ConfigError):
    """A script raysim cannot launch, said in one line (a ConfigError: the CLI exits 2)."""

    def __init__(self, problem: str):
        self.problems = [problem]
        ValueError.__init__(self, problem)


REPORT_EVERY_STEPS = 50
"""Where no DistributedSampler reveals the script's epochs, a metrics line per this many
optimizer steps."""


@dataclass(frozen=True, kw_only=True)
class ScriptSpec:
    """The script, its arguments and where it runs; plain values, shipped to every node."""

    target: str
    """The script's path, or the module's dotted name with `module` set."""
    args: tuple[str, ...] = ()
    """What follows the script on the command line: the script's own sys.argv[1:]."""
    module: bool = False
    """`-m module`, as `python -m` runs it."""
    cwd: str = ""
    """The user's working directory, where the script runs (default: the driver's)."""
    all_ranks_output: bool = False
    """Every node's output on the console, prefixed by node (default: rank 0's only)."""
    report_every_steps: int = REPORT_EVERY_STEPS
    stop_after_steps: int = 0
    """End the script, as a success, before its optimizer step after this many (0: it runs
    to its end): `raysim fit`'s trials, a few steps at each batch."""

    def __post_init__(self) -> None:
        if not self.cwd:
            object.__setattr__(self, "cwd", os.getcwd())

    @property
    def name(self) -> str:
        """How summary.json names the program."""
        return f"script:{'-m ' if self.module else ''}{self.target}"


def option_index(args: Sequence[str], flag: str) -> int | None:
    """Where the script's arguments give `flag` (`--flag V` or `--flag=V`; the last, which
    argparse keeps), or None."""
    for index in range(len(args) - 1, -1, -1):
        if (args[index] == flag and index + 1 < len(args)) or args[index].startswith(flag + "="):
            return index
    return None


def option_value(args: Sequence[str], flag: str) -> str | None:
    index = option_index(args, flag)
    if index is None:
        return None
    return args[index].partition("=")[2] if "=" in args[index] else args[index + 1]


def with_option(args: Sequence[str], flag: str, value: object) -> tuple[str, ...]:
    """The script's arguments with `flag` set to `value`: in place where they give it,
    else added at the end."""
    args, index = list(args), option_index(args, flag)
    if index is None:
        return (*args, flag, str(value))
    if "=" in args[index]:
        args[index] = f"{flag}={value}"
    else:
        args[index + 1] = str(value)
    return tuple(args)


def script_spec(argv: Sequence[str] | ScriptSpec, all_ranks_output: bool = False) -> ScriptSpec:
    """`SCRIPT ARGS...` or `-m MODULE ARGS...`: everything after the script is the script's."""
    if isinstance(argv, ScriptSpec):
        return argv
    if isinstance(argv, str):
        argv = [argv]
    argv = list(argv)
    if not argv:
        raise ScriptError("launch: give the script to run, e.g. raysim launch train.py --lr 0.1")
    if argv[0] == "-m":
        if len(argv) < 2:
            raise ScriptError("launch -m: give the module to run, e.g. -m mypkg.train")
        return ScriptSpec(
            target=argv[1], args=tuple(argv[2:]), module=True, all_ranks_output=all_ranks_output
        )
    target = os.path.abspath(argv[0])
    return ScriptSpec(target=target, args=tuple(argv[1:]), all_ranks_output=all_ranks_output)


SPAWNERS = {"mp", "multiprocessing", "torch.multiprocessing"}
SPAWNING = ("spawn", "start_processes")
TORCHRUN_STYLE = (
    "raysim launch starts one process per node as torchrun does: use the torchrun style "
    "(RANK and WORLD_SIZE from the environment, init_process_group(), no spawn)"
)


def script_file(spec: ScriptSpec) -> str:
    """The file the spec runs: its path, or where its module is found from the user's
    working directory."""
    if not spec.module:
        if not os.path.isfile(spec.target):
            raise ScriptError(f"launch: no script at {spec.target}")
        return spec.target
    import importlib.util
    import sys

    sys.path.insert(0, spec.cwd)
    try:
        found = importlib.util.find_spec(spec.target)
    except (ImportError, ValueError) as err:
        found, why = None, f" ({type(err).__name__}: {err})"
    else:
        why = ""
    finally:
        sys.path.remove(spec.cwd)
    if found is None or not found.origin or not os.path.isfile(found.origin):
        raise ScriptError(f"launch -m {spec.target}: no such module from {spec.cwd}{why}")
    return found.origin


def spawn_line(tree: ast.AST) -> int | None:
    """The first line that starts processes with torch.multiprocessing's spawn, if any:
    mp.spawn(...), or spawn(...) imported from torch.multiprocessing."""
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in SPAWNERS
        for alias in node.names
        if alias.name in SPAWNING
    }
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        spawns = isinstance(func, ast.Attribute) and func.attr in SPAWNING
        if (spawns and ast.unparse(func.value) in SPAWNERS) or (
            isinstance(func, ast.Name) and func.id in imported
        ):
            return node.lineno
    return None


def check_script(spec: ScriptSpec) -> None:
    """Before Ray starts, one line each: a missing script, one that does not compile, one
    that spawns its own processes."""
    path = script_file(spec)
    try:
        with open(path, encoding="utf-8") as file:
            tree = ast.parse(file.read(), path)
    except (SyntaxError, ValueError, UnicodeDecodeError) as err:
        where = f" (line {err.lineno})" if isinstance(err, SyntaxError) else ""
        message = err.msg if isinstance(err, SyntaxError) else str(err)
        raise ScriptError(
            f"launch: {path} does not compile: {type(err).__name__}: {message}{where}"
        ) from None
    line = spawn_line(tree)
    if line is not None:
        raise ScriptError(f"launch: {path} calls mp.spawn (line {line}); {TORCHRUN_STYLE}")
