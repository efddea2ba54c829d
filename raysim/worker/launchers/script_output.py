"""A launched script's output, kept whole in the run directory (one file per node) while
it still goes where the worker's output goes; the driver follows the files for the
console (raysim.console.script_output)."""

from __future__ import annotations

import builtins
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO


class Tee:
    """A text stream writing to the worker's stream and the node's file."""

    def __init__(self, stream: TextIO, file: TextIO):
        self.stream = stream
        self.file = file

    def write(self, text: str) -> int:
        self.file.write(text)
        self.file.flush()  # the driver follows the file as the script runs
        return self.stream.write(text)

    def flush(self) -> None:
        self.file.flush()
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def plain_print() -> Any:
    """Python's own print: Ray Train's patched one also logs each line to its logger, whose
    console handler writes to sys.stderr, so a teed line would be written twice."""
    from ray.train.v2._internal.logging import patch_print

    return getattr(patch_print, "_original_print", builtins.print)


@contextlib.contextmanager
def teed_output(path: Path) -> Iterator[None]:
    """sys.stdout and sys.stderr also into `path` (appended: a restarted script adds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out, err, printer = sys.stdout, sys.stderr, builtins.print
    with open(path, "a", encoding="utf-8", errors="replace") as file:
        sys.stdout, sys.stderr, builtins.print = Tee(out, file), Tee(err, file), plain_print()
        try:
            yield
        finally:
            sys.stdout, sys.stderr, builtins.print = out, err, printer


@contextlib.contextmanager
def untee() -> Iterator[None]:
    """raysim's own calls (Ray Train's report logs a line) stay out of the script's file."""
    out, err = sys.stdout, sys.stderr
    sys.stdout = out.stream if isinstance(out, Tee) else out
    sys.stderr = err.stream if isinstance(err, Tee) else err
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
