"""A launched script's own output on the driver's console while it runs: rank 0's as it
is, or every node's lines prefixed by node (torchrun's --tee), followed from the files
each node writes in the run directory."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TextIO

from raysim.rundir import SCRIPT_OUTPUT_DIR


def output_rank(path: Path) -> int:
    """node-3.log -> 3."""
    return int(path.stem.rpartition("-")[2])


class ScriptOutputFollower:
    """Prints the new complete lines of the followed nodes' output files."""

    def __init__(self, run_dir: Path, all_ranks: bool, out: TextIO | None, poll_s: float = 0.2):
        self.folder = Path(run_dir) / SCRIPT_OUTPUT_DIR
        self.all_ranks = all_ranks
        self.out = out
        self.poll_s = poll_s
        self._read: dict[Path, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> ScriptOutputFollower:
        if self.out is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.out is not None:
            self._stop.set()
            self._thread.join()
            self._print_new(final=True)

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._print_new()

    def _files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        files = sorted(self.folder.glob("node-*.log"), key=output_rank)
        return files if self.all_ranks else [f for f in files if output_rank(f) == 0]

    def _print_new(self, final: bool = False) -> None:
        out = self.out
        if out is None:
            return
        for path in self._files():
            with open(path, "rb") as file:
                file.seek(self._read.get(path, 0))
                data = file.read()
            end = len(data) if final else data.rfind(b"\n") + 1
            if end <= 0:
                continue
            self._read[path] = self._read.get(path, 0) + end
            prefix = f"[{path.stem}] " if self.all_ranks else ""
            text = data[:end].decode("utf-8", errors="replace")
            for line in text.splitlines():
                out.write(f"{prefix}{line}\n")
            out.flush()
