"""The driver's start-up, in one object: its marks (report/startup.py turns them into
stages) and the training stack imported on a thread meanwhile (raysim.preload)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from raysim.preload import ImportsAhead
from raysim.procfs import process_start_unix, ran_other_programs
from raysim.worker.startup import StartupMarks

TRAINING_STACK = (
    "ray.train",
    "ray.train.torch",
    "raysim.record.recorder",
    "raysim.worker.launchers",
)
"""What the driver needs for Ray Train's fit(), imported while the checks run and Ray
starts (beside the modules of the program the nodes run)."""


class DriverStartup:
    """Marks run_start when made; import_ahead starts the thread. The steps that import
    torch, MLflow or Ray Train themselves wait for the thread first (imports_done), so the
    two never contend for a module's import lock."""

    _process_counted: ClassVar[bool] = False
    """Whether a run in this process has counted the process's start-up in its own: a later
    run (a sweep, a notebook) did not start the process."""

    def __init__(self) -> None:
        self.marks = StartupMarks()
        if not DriverStartup._process_counted:
            DriverStartup._process_counted = True
            if not ran_other_programs():  # else the start is a shell's: timed from here
                self.marks.mark("process_start", process_start_unix())
        self.marks.mark("run_start")
        self._imports: ImportsAhead | None = None

    def import_ahead(self, modules: Sequence[str] = ()) -> None:
        """The training stack and the program's own modules, on the thread."""
        self._imports = ImportsAhead(TRAINING_STACK + tuple(modules))

    def mark(self, name: str) -> None:
        self.marks.mark(name)

    def imports_done(self) -> None:
        """Wait for the thread's imports (at once where they are done or never began)."""
        if self._imports is not None:
            self._imports.wait()
