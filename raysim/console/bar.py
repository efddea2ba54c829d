"""Progress within an epoch, for a terminal: workers post their step to a small actor
(raysim.worker.progress) and the driver draws one bar line for the slowest node.

Metrics still leave workers only through `ray.train.report`; this is display only,
and only when the console is a terminal (plain epoch lines otherwise, e.g. in CI).
"""

from __future__ import annotations

from typing import Any


def format_bar(epoch: int, num_epochs: int, steps: dict[int, tuple[int, int]], width=30) -> str:
    """One line for the slowest node: synchronous training moves at its pace."""
    done, total = min(steps.values(), key=lambda s: s[0] / max(s[1], 1))
    filled = int(width * done / max(total, 1))
    bar = "#" * filled + "." * (width - filled)
    return f"epoch {epoch}/{num_epochs} [{bar}] step {done}/{total} (slowest of {len(steps)})"


class ProgressBoard:
    """Holds each rank's latest (epoch, step, total); a Ray actor made by `make_board`."""

    def __init__(self):
        self.steps: dict[int, tuple[int, int, int]] = {}

    def post(self, rank: int, epoch: int, step: int, total: int) -> None:
        self.steps[rank] = (epoch, step, total)

    def read(self) -> dict[int, tuple[int, int, int]]:
        return dict(self.steps)


def make_board() -> Any:
    import ray

    return ray.remote(num_cpus=0)(ProgressBoard).remote()


class BarReader:
    """Driver side: reads the board without ever blocking the console on it."""

    def __init__(self, board: Any, num_epochs: int):
        self.board = board
        self.num_epochs = num_epochs
        self.pending = None

    def line(self) -> str | None:
        """The bar for the latest epoch any rank is in; None until the board answers."""
        import ray

        if self.pending is None:
            self.pending = self.board.read.remote()
        ready, _ = ray.wait([self.pending], timeout=0)
        if not ready:
            return None
        steps, self.pending = ray.get(ready[0]), None
        if not steps:
            return None
        epoch = max(e for e, _, _ in steps.values())
        current = {r: (s, t) for r, (e, s, t) in steps.items() if e == epoch}
        return format_bar(epoch, self.num_epochs, current)
