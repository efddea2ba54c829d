"""Worker side of the console's in-epoch bar: throttled, fire-and-forget step posts."""

from __future__ import annotations

import time
from typing import Any

POST_EVERY_S = 0.5


class StepPoster:
    """Worker side: posts (epoch, step, total) at most every POST_EVERY_S seconds."""

    def __init__(self, board: Any, rank: int):
        self.board = board
        self.rank = rank
        self.last = 0.0

    def __call__(self, epoch: int, step: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last >= POST_EVERY_S or step == total:
            self.board.post.remote(self.rank, epoch, step, total)
            self.last = now
