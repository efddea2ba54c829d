"""The script launcher: the node runs an unmodified torchrun-style script (a path or
`-m module`) with its own sys.argv, in the user's working directory, with torchrun's
environment variables, as one machine with one device (LOCAL_RANK 0).

Ray Train has initialised the process group already: the script joins it (script_hooks.py),
and the DDP model it builds gets raysim's instrumentation as prepare() gives it.
`sys.exit(0)` is success; a non-zero exit or an exception fails the node with the
script's own traceback, never raysim's.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar

import ray.train

from raysim.config.schema import ExperimentConfig
from raysim.config.script import ScriptSpec, script_file
from raysim.rundir import script_output_path
from raysim.worker.launchers.base import Launcher
from raysim.worker.launchers.node import NodeError
from raysim.worker.launchers.script_hooks import ScriptReports, install
from raysim.worker.launchers.script_output import teed_output
from raysim.worker.memory import SimulatedOutOfMemoryError, is_out_of_memory
from raysim.worker.node_context import NodeContext
from raysim.worker.session import current_session


def torchrun_env(ctx: NodeContext, threads: int) -> dict[str, str]:
    """What torchrun sets for a rank, each simulated node a machine with one device."""
    rank, world = str(ctx.rank), str(ctx.world_size)
    return {
        "RANK": rank, "LOCAL_RANK": "0", "WORLD_SIZE": world, "LOCAL_WORLD_SIZE": "1",
        "GROUP_RANK": rank, "NODE_RANK": rank, "GROUP_WORLD_SIZE": world,
        "ROLE_RANK": rank, "ROLE_WORLD_SIZE": world, "ROLE_NAME": "default",
        "TORCHELASTIC_RESTART_COUNT": "0", "TORCHELASTIC_RUN_ID": "raysim",
        "OMP_NUM_THREADS": str(threads),
    }  # fmt: skip


@contextlib.contextmanager
def scoped(env: dict[str, str], cwd: str, argv: list[str], path0: str) -> Iterator[None]:
    """The script's process state (environment, directory, argv, sys.path[0]), restored."""
    saved_env = {key: os.environ.get(key) for key in env}
    saved_cwd, saved_argv, saved_path = os.getcwd(), sys.argv, list(sys.path)
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = argv
    sys.path.insert(0, path0)
    try:
        yield
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        os.chdir(saved_cwd)
        sys.argv, sys.path[:] = saved_argv, saved_path


def script_traceback(err: BaseException, file: str) -> TracebackType | None:
    """The traceback from the script's first frame on: raysim's and runpy's go."""
    tb = err.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != file:
        tb = tb.tb_next
    return tb or err.__traceback__


def failure(err: BaseException, file: str, node: str) -> NodeError:
    """The node's error: the exception's type and message first, then its traceback."""
    headline = "".join(traceback.format_exception_only(err)).strip()
    told = "".join(traceback.format_exception(type(err), err, script_traceback(err, file)))
    return NodeError(f"{node}: the script raised {headline}\n\n{told.rstrip()}")


def exit_failure(code: object, node: str) -> NodeError | None:
    """sys.exit(0) or sys.exit() is success; any other status fails the node."""
    if code is None or code == 0:
        return None
    said = "" if isinstance(code, int) else f" ({code})"
    status = code if isinstance(code, int) else 1
    return NodeError(f"{node}: the script exited with status {status}{said}")


@dataclass(frozen=True)
class ScriptLauncher(Launcher):
    spec: ScriptSpec

    name: ClassVar[str] = "script"

    def launch(self, cfg: ExperimentConfig) -> None:
        session = current_session()
        ctx, spec = session.context, self.spec
        file = script_file(spec)
        env = torchrun_env(ctx, session.plan.torch_threads)
        argv = [file, *spec.args]
        path0 = spec.cwd if spec.module else os.path.dirname(file)
        reports = ScriptReports(session, ray.train.report, spec.report_every_steps)
        with (
            teed_output(script_output_path(ctx.run_dir, ctx.rank)),
            scoped(env, spec.cwd, argv, path0),
        ):
            patches = install(session, reports, spec.stop_after_steps)
            try:
                run_script(spec, file, ctx.node_id)
            finally:
                patches.restore()
        reports.finish()


def run_script(spec: ScriptSpec, file: str, node: str) -> None:
    """Run it as `python` would, as __main__; its failure named for the node."""
    try:
        if spec.module:
            runpy.run_module(spec.target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(file, run_name="__main__")
    except SystemExit as done:
        error = exit_failure(done.code, node)
        if error is not None:
            raise error from None
    except SimulatedOutOfMemoryError as err:
        raise NodeError(str(err)) from None  # raysim's refusal, said whole: one line
    except Exception as err:
        if is_out_of_memory(err):
            raise  # the node's memory partition: run_node explains it
        raise failure(err, file, node) from None
