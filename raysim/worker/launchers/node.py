"""What Ray Train calls on every worker: set the node up, then hand over to the launcher."""

from __future__ import annotations

import time
import traceback
from pathlib import Path

from raysim.config.schema import ExperimentConfig
from raysim.worker.launchers.base import Launcher
from raysim.worker.memory import SimulatedOutOfMemoryError, is_out_of_memory
from raysim.worker.session import current_session, start


class NodeError(RuntimeError):
    """A training function's error, with its own traceback: Ray Train hands the driver
    the exception without it."""


def run_node(loop_config: dict) -> None:
    """Ray Train's train_loop_per_worker: the node's setup, then its launcher (which runs
    the built-in experiment or the user's training). Running out of the node's memory
    partition is explained, whatever function it happened in."""
    called = time.time()
    cfg: ExperimentConfig = loop_config["experiment"]
    start(
        cfg, loop_config["plan"], Path(loop_config["run_dir"]), loop_config["progress_board"],
        called,
    )  # fmt: skip
    launcher: Launcher = loop_config["launcher"].open()
    try:
        launcher.launch(cfg)
    except NodeError:
        raise  # told already, with the traceback that matters (a script's own)
    except Exception as err:
        guard = current_session().guard
        explain = guard is not None and is_out_of_memory(err)
        shown = (
            guard.explain(err) if explain and type(err) is not SimulatedOutOfMemoryError else err
        )
        headline = "".join(traceback.format_exception_only(shown)).strip()
        raise NodeError(f"{headline}\n\n{traceback.format_exc().rstrip()}") from None
    finally:
        current_session().end()
